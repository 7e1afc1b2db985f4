"""Kill-and-resume equality: real processes killed with SIGKILL mid-epoch and during a checkpoint
write, resumed through the CLI, end with bit-equal weights and the same best epoch as a run that
was never interrupted; for the example plugin and every built-in domain, with DataLoader workers.

A child process runs the real ``train`` workflow with a callback that SIGKILLs its own process
after N training steps, or with the checkpoint writer wrapped so that the process SIGKILLs itself
half-way through writing ``resume.safetensors`` (the temporary file is left behind, as after a real crash).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path

    from mmapps.plugins import get_domain
    from mmapps.train import checkpoint as ckpt
    from mmapps.train.callbacks import Callback
    from mmapps.workflows.resolve import resolve_config
    from mmapps.workflows.run import train

    domain_name, recipe, out, mode, count, resume = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6] == "resume"
    overrides = sys.argv[7:]

    class KillAfterSteps(Callback):
        def __init__(self):
            self.steps = 0

        def on_train_batch_end(self, trainer, loss):
            self.steps += 1
            if self.steps == count:
                os.kill(os.getpid(), signal.SIGKILL)

    callbacks = [KillAfterSteps()] if mode == "steps" else []
    if mode == "write":  # die half-way through the count-th write of the training state
        real_atomic_write, writes = ckpt.atomic_write, [0]

        def atomic_write(path, write):
            if Path(path).name != ckpt.TRAINING_STATE_FILE:
                return real_atomic_write(path, write)
            writes[0] += 1
            if writes[0] < count:
                return real_atomic_write(path, write)

            def half_then_die(handle):
                import io

                buffer = io.BytesIO()
                write(buffer)
                data = buffer.getvalue()
                handle.write(data[: len(data) // 2])
                handle.flush()
                os.kill(os.getpid(), signal.SIGKILL)

            return real_atomic_write(path, half_then_die)

        ckpt.atomic_write = atomic_write
    domain = get_domain(domain_name)
    cfg = resolve_config(domain, recipe, overrides=overrides + [f"out_dir={out}"])
    train(cfg, domain, resume=resume, callbacks=callbacks)
    """
)

COMMON = ["train.progress=false", "train.tensorboard=false", "train.threads=1", "train.deterministic=true", "eval.bootstrap_resamples=0", "data.num_workers=2"]


def _env(extra_path: Path | None = None) -> dict[str, str]:
    paths = [str(extra_path)] if extra_path else []
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths + [os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}


def run_child(tmp_path: Path, env: dict, domain: str, recipe: str, out: Path, mode: str = "none", count: int = 0, resume: bool = False, overrides=()) -> subprocess.CompletedProcess:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    cmd = [sys.executable, str(script), domain, recipe, str(out), mode, str(count), "resume" if resume else "fresh", *COMMON, *overrides]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mmapps", *args], env=env, capture_output=True, text=True, timeout=600)


def weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def best_epoch(run: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(run / "checkpoints" / "best.safetensors"), framework="pt") as handle:
        return json.loads(handle.metadata()["extra"])["epoch"]


def assert_same_run(a: Path, b: Path) -> None:
    import torch

    for name in ("last.safetensors", "best.safetensors"):
        wa, wb = weights(a / "checkpoints" / name), weights(b / "checkpoints" / name)
        assert wa.keys() == wb.keys()
        different = [k for k in wa if not torch.equal(wa[k], wb[k])]
        assert not different, f"{name}: {len(different)} tensors differ after resume, e.g. {different[:3]}"
    assert best_epoch(a) == best_epoch(b)
    assert json.loads((a / "metrics.json").read_text()) == json.loads((b / "metrics.json").read_text())


def kill_write_kill_resume(tmp_path: Path, env: dict, domain: str, recipe: str, overrides: list[str], write_kill: int, step_kill: int) -> None:
    """Straight run vs. a run killed during its `write_kill`-th training-state write, resumed and killed again
    `step_kill` steps later (mid-epoch), then resumed to the end through the CLI."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    done = run_child(tmp_path, env, domain, recipe, straight, overrides=overrides)
    assert done.returncode == 0, done.stderr[-3000:]

    killed = run_child(tmp_path, env, domain, recipe, resumed, "write", write_kill, overrides=overrides)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    leftovers = list((resumed / "checkpoints").glob(".resume.safetensors.*.tmp"))
    assert leftovers, "the killed write leaves its temporary file, as a real crash does"
    assert not (resumed / "metrics.json").exists()

    killed = run_child(tmp_path, env, domain, recipe, resumed, "steps", step_kill, resume=True, overrides=overrides)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert "temporary file(s)" in killed.stderr and not list((resumed / "checkpoints").glob(".*.tmp")), "cleaned on resume"

    final = cli(env, domain, "train", "--resume", str(resumed))
    assert final.returncode == 0, final.stderr[-3000:]
    assert_same_run(straight, resumed)


def test_example_plugin_resumes_bit_exactly_after_kills_mid_epoch_and_during_a_write(shapes_site, tmp_path):
    # 80 samples: 48 train = 3 batches of 16 per epoch; a mid-epoch checkpoint every 2 steps
    overrides = ["train.epochs=3", "train.checkpoint_every_steps=2"]
    kill_write_kill_resume(tmp_path, _env(shapes_site), "shapes", "smoke", overrides, write_kill=2, step_kill=3)


def test_kill_at_epoch_boundary_checkpoints_only_resumes_exactly(shapes_site, tmp_path):
    """Without step checkpoints a kill mid-epoch restarts that epoch from its start: still exact."""
    env = _env(shapes_site)
    overrides = ["train.epochs=3"]
    done = run_child(tmp_path, env, "shapes", "smoke", tmp_path / "straight", overrides=overrides)
    assert done.returncode == 0, done.stderr[-3000:]
    killed = run_child(tmp_path, env, "shapes", "smoke", tmp_path / "resumed", "steps", 5, overrides=overrides)  # epoch 2, batch 2
    assert killed.returncode == -signal.SIGKILL
    final = cli(env, "shapes", "train", "--resume", str(tmp_path / "resumed"))
    assert final.returncode == 0, final.stderr[-3000:]
    assert_same_run(tmp_path / "straight", tmp_path / "resumed")


DOMAINS = {
    # (recipe, overrides, kill during the n-th training-state write, then kill n steps after that resume)
    "medical": ("smoke", ["data.demo_n=24", "train.epochs=2", "train.batch_size=4", "train.checkpoint_every_steps=2"], 2, 2),
    "driving": ("smoke", ["data.demo_n=12", "train.epochs=2", "train.max_steps_per_epoch=4", "train.checkpoint_every_steps=2"], 2, 2),
    "surveillance": ("smoke", ["data.demo_n=10", "train.epochs=2", "train.batch_size=2", "train.checkpoint_every_steps=2"], 2, 2),
}


@pytest.mark.slow
@pytest.mark.parametrize("domain", sorted(DOMAINS))
def test_builtin_domain_resumes_bit_exactly_with_workers(domain, tmp_path):
    recipe, overrides, write_kill, step_kill = DOMAINS[domain]
    kill_write_kill_resume(tmp_path, _env(), domain, recipe, overrides, write_kill, step_kill)
