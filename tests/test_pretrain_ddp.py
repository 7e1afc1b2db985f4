"""Pretraining under DDP (2 processes, CPU, gloo) through the one Trainer: synced weights, sharded pool, one checkpoint from rank 0."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import torch
    from safetensors.torch import save_file

    from mmapps.plugins import get_domain
    from mmapps.pretrain.recipes import resolve_pretrain_config
    from mmapps.pretrain.workflow import pretrain
    from mmapps.train import checkpoint as ckpt
    from mmapps.train.callbacks import Callback

    out, record = Path(sys.argv[1]), Path(sys.argv[2])


    class EveryRank(Callback):
        # what each process ends with: its weights and buffers, and the pool batches it trained on
        def on_fit_start(self, trainer):
            self.batches = 0

        def on_train_batch_end(self, trainer, loss):
            self.batches += 1

        def on_fit_end(self, trainer):
            rank = trainer.runtime.rank
            state = {k: v.detach().contiguous().clone() for k, v in ckpt.unwrap(trainer.model).state_dict().items()}
            save_file(state, str(record / f"rank{rank}.safetensors"))
            (record / f"rank{rank}.batches").write_text(str(self.batches))


    domain = get_domain("shapes")
    overrides = [f"out_dir={out}", "train.progress=false", "train.tensorboard=false", "train.epochs=2", "train.batch_size=8", "data.demo_n=40",
                 "pretrain.statistics_batches=2", "pretrain.report_samples=0"]
    cfg = resolve_pretrain_config(domain, "smoke", overrides=overrides)
    pretrain(cfg, domain, callbacks=[EveryRank()])
    """
)


@pytest.mark.slow
def test_two_process_cpu_ddp_pretraining_syncs_and_writes_one_checkpoint(shapes_site, tmp_path):
    from safetensors.torch import load_file

    out, record = tmp_path / "run", tmp_path / "ranks"
    record.mkdir()
    script = tmp_path / "ddp_pretrain.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shapes_site), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29541", str(script), str(out), str(record)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]

    a, b = load_file(str(record / "rank0.safetensors")), load_file(str(record / "rank1.safetensors"))
    assert a.keys() == b.keys()
    local = ("running_mean", "running_var", "num_batches_tracked")  # batch-norm statistics: broadcast from rank 0 before each forward, then updated on each rank's own batch
    assert any(k.endswith(local) for k in a)
    for key in a:  # parameters (gradients all-reduced), priors and target statistics (the same batches read): bit-equal on both ranks
        assert key.endswith(local) or a[key].equal(b[key]), key
    assert any(k.endswith("decoder.prior.mean") and v.numel() for k, v in a.items())  # the same fitted priors on both ranks

    pool = json.loads((out / "pool.json").read_text())["pool samples"]
    per_rank = math.ceil(pool / 2)  # DistributedSampler: each rank a half of the pool (padded to equal halves)
    batches = [int((record / f"rank{r}.batches").read_text()) for r in (0, 1)]
    assert batches == [2 * math.ceil(per_rank / 8)] * 2  # 2 epochs of the rank's own batches, not of the whole pool
    with (out / "logs" / "pretrain_steps.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == batches[0]  # rank 0 alone logs

    last = load_file(str(out / "checkpoints" / "last.safetensors"))
    assert last and all(value.equal(a[key]) for key, value in last.items())  # rank 0 wrote the synced final weights
    best = load_file(str(out / "checkpoints" / "best.safetensors"))
    saved = load_file(str(out / "checkpoints" / "pretrained.safetensors"))
    assert saved and all(value.equal(best["backbone." + key]) for key, value in saved.items())  # the transferred weights of the selected epoch
    metrics = json.loads((out / "metrics.json").read_text())
    held_out = json.loads((out / "pool.json").read_text())["held-out samples"]
    assert held_out > 0 and all(math.isfinite(metrics[f"loss/{m}"]) for m in ("image", "measurements"))
    assert sorted(p.name for p in (out / "checkpoints").iterdir() if p.name.startswith("pretrained")) == ["pretrained.safetensors"]
