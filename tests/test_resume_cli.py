"""Resume and run-folder rules through the CLI: one exit code for nothing to resume, a copied run
resumes into the copy, a second run on a busy folder is refused, a failed write exits 8."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys

import yaml

from mmapps.errors import NothingToResumeError, RunLockedError, WriteError


def _env(shapes_site):
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(shapes_site), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}


def _cli(env, *args, **kwargs):
    return subprocess.run([sys.executable, "-m", "mmapps", *args], env=env, capture_output=True, text=True, timeout=600, **kwargs)


QUICK = ["--set", "train.progress=false", "--set", "train.tensorboard=false", "--set", "eval.bootstrap_resamples=0", "--set", "train.epochs=1"]


def test_both_nothing_to_resume_cases_exit_with_one_documented_code(shapes_site, tmp_path):
    env = _env(shapes_site)
    empty = _cli(env, "shapes", "train", "--resume", str(tmp_path / "no-such-run"))
    (tmp_path / "early").mkdir()
    (tmp_path / "early" / "config.yaml").write_text("domain: shapes\nrecipe: smoke\n")
    early = _cli(env, "shapes", "train", "--resume", str(tmp_path / "early"))
    for proc in (empty, early):
        assert proc.returncode == NothingToResumeError.exit_code == 6, proc.stderr
        assert "nothing to resume" in proc.stderr and "Traceback" not in proc.stderr
    assert "no config.yaml" in empty.stderr and "checkpoints/resume.safetensors" in early.stderr


def test_resume_of_a_copied_run_folder_writes_into_the_copy(shapes_smoke_run, shapes_site, tmp_path):
    original = shapes_smoke_run.run_dir
    before = {p.name: p.stat().st_mtime_ns for p in (original / "checkpoints").iterdir()}
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    proc = _cli(_env(shapes_site), "shapes", "train", "--resume", str(copy))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert yaml.safe_load((copy / "config.yaml").read_text())["out_dir"] == str(copy)
    assert (copy / "report.md").stat().st_mtime_ns > (original / "report.md").stat().st_mtime_ns
    assert {p.name: p.stat().st_mtime_ns for p in (original / "checkpoints").iterdir()} == before, "the original run is untouched"


def test_second_run_on_a_busy_run_folder_is_refused_naming_the_holder(shapes_site, tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", f"import time; from mmapps.train.lock import RunLock; RunLock({str(run)!r}).acquire(); print('held', flush=True); time.sleep(120)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        proc = _cli(_env(shapes_site), "shapes", "train", "--recipe", "smoke", "--out", str(run), *QUICK)
        assert proc.returncode == RunLockedError.exit_code == 7, proc.stderr
        assert f"in use by another run (pid {holder.pid} on" in proc.stderr and "Traceback" not in proc.stderr
        assert not (run / "checkpoints").exists(), "the refused run wrote nothing"
    finally:
        holder.kill()
        holder.wait()
    proc = _cli(_env(shapes_site), "shapes", "train", "--recipe", "smoke", "--out", str(run), *QUICK)
    assert proc.returncode == 0, "the lock of the killed holder is free at once: " + proc.stderr[-2000:]


def test_a_write_failing_in_training_exits_8_naming_the_file_and_keeps_the_last_good_checkpoint(shapes_smoke_run, shapes_site, tmp_path):
    checkpoints = shapes_smoke_run.run_dir / "checkpoints"
    best, last = (checkpoints / "best.safetensors").stat().st_size, (checkpoints / "resume.safetensors").stat().st_size
    assert best < last
    limit = (best + last) // 2  # the weights fit, the training state (weights + optimiser moments) does not

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    run = tmp_path / "run"
    proc = _cli(_env(shapes_site), "shapes", "train", "--recipe", "smoke", "--out", str(run), *QUICK, preexec_fn=limit_file_size)
    assert proc.returncode == WriteError.exit_code == 8, proc.stderr[-2000:]
    assert f"cannot write {run / 'checkpoints' / 'resume.safetensors'}: EFBIG" in proc.stderr and "MB free of" in proc.stderr
    assert "Traceback" not in proc.stderr
    from mmapps.train import checkpoint as ckpt

    ckpt.read_inference_checkpoint(run / "checkpoints" / "best.safetensors")  # written before, intact
    assert not list((run / "checkpoints").glob(".*.tmp"))
