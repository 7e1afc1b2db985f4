"""Load test of ``mmapps medical serve``: an open-loop httpx generator against a local server (loopback).

    python benchmarks/serve_load.py --checkpoint RUN/checkpoints/best.safetensors [--seconds 20] [--sustained-s 600]

Arms (each against a fresh ``mmapps medical serve`` subprocess, 127.0.0.1 only, stopping by itself):

- **in-process**: the same decode -> model -> postprocess path (decoder child, `ModelRunner.predict`)
  called in this process, one study after another: the throughput baseline, and the latency
  that HTTP overhead is measured against;
- **HTTP** at concurrency 1, 8 and 32, with batching (``--max-batch-size 8``) and without (``1``):
  throughput and p50/p95/p99 latency, measured from each request's *scheduled* send time (open
  loop: a slow server does not slow the schedule, so queueing is not hidden);
- **above capacity**: 2x the measured capacity for a few seconds: status codes and Retry-After;
- **auth**: no key, a wrong key, a predict key on an admin endpoint: all refused (status counts);
- **bad input**: corrupt / truncated DICOM, a PNG named .dcm, a wrong content type, a missing
  field, an oversized upload: status codes, and the next good request's status;
- **sustained**: ``--sustained-s`` seconds at 70 % of capacity: errors and the server's RSS over time;
- ``--ray-trace`` (alone): the Ray Serve autoscaler under a load ramp, replica count over time
  (``benchmarks/results/serve_ray_autoscale.{json,md}``).

The generator's own CPU time (``getrusage``) and the server's (psutil) are reported with each arm.
Results: ``benchmarks/results/serve_load_medical.{json,md}``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import resource
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, table, write_results

PREDICT, ADMIN = secrets.token_urlsafe(24), secrets.token_urlsafe(24)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def studies(checkpoint: Path, n: int = 16) -> list[tuple[list[tuple[str, bytes]], str]]:
    """(DICOM files, note) of the run's demo studies, read from its data root."""
    from mmapps.train import checkpoint as ckpt

    _, metadata = ckpt.read_inference_checkpoint(checkpoint)
    root = Path(ckpt.checkpoint_config(metadata, checkpoint, "medical")["data"]["root"])
    out = []
    with open(root / "manifest.csv") as handle:
        for row in list(csv.DictReader(handle))[:n]:
            files = [(Path(p).name, (root / p).read_bytes()) for p in row["dicom_paths"].split(";")]
            out.append((files, (root / row["note_path"]).read_text()))
    return out


class Server:
    """``mmapps medical serve`` in a subprocess on loopback, with a predict and an admin key."""

    def __init__(self, checkpoint: Path, batch: int, extra: list[str] | None = None) -> None:
        import psutil

        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="serve-load-"))
        env = {**os.environ, "MMAPPS_API_KEYS": f"bench:predict:{PREDICT};ops:admin:{ADMIN}"}
        cmd = [sys.executable, "-m", "mmapps", "medical", "serve", "--checkpoint", str(checkpoint), "--port", str(self.port),
               "--max-batch-size", str(batch), "--rate", "0", "--audit-log", str(self.dir / "audit.jsonl"), *(extra or [])]
        self.log = open(self.dir / "server.log", "w")  # noqa: SIM115  # closed in stop()
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.ps = psutil.Process(self.proc.pid)
        self.url = f"http://127.0.0.1:{self.port}"
        import httpx

        deadline = time.monotonic() + 1200
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {(self.dir / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/v2/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError("server not ready after 1200 s")

    def cpu_seconds(self) -> float:
        procs = [self.ps, *self.ps.children(recursive=True)]
        total = 0.0
        for p in procs:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except Exception:  # noqa: BLE001, S110  # a decoder child that just exited
                pass
        return total

    def rss_mb(self) -> float:
        return self.ps.memory_info().rss / 2**20

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def multipart(study: tuple[list[tuple[str, bytes]], str]) -> dict[str, Any]:
    files, note = study
    return {"files": [("dicom", (name, data, "application/dicom")) for name, data in files], "data": {"note": note}}


async def open_loop(url: str, payloads: list[dict], rate: float, seconds: float, concurrency: int, cap: bool = True) -> dict[str, Any]:
    """Requests scheduled at ``rate``/s for ``seconds``, at most ``concurrency`` in flight.

    Latency is reported from the send (service latency) and from the scheduled time (what an
    open-loop client sees, queueing in the generator included: the figure for the sustained run).
    """
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    n = max(int(rate * seconds), 2 * concurrency)
    if cap:  # a saturating arm: enough requests to hold the concurrency, bounded in count
        n = min(n, max(4 * concurrency, 16))
    latencies, queued, statuses, retry_after = [], [], {}, []
    slots = asyncio.Semaphore(concurrency)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120, headers={"Authorization": f"Bearer {PREDICT}"}) as client:
        start = time.perf_counter()

        async def one(i: int) -> None:
            scheduled = start + i / rate
            await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            async with slots:
                sent = time.perf_counter()
                p = payloads[i % len(payloads)]
                try:
                    r = await client.post("/v1/medical/predict", files=p["files"], data=p["data"])
                    code = r.status_code
                    if "retry-after" in r.headers:
                        retry_after.append(r.headers["retry-after"])
                except httpx.HTTPError as err:
                    code = type(err).__name__
            statuses[str(code)] = statuses.get(str(code), 0) + 1
            if code == 200:
                latencies.append(time.perf_counter() - sent)
                queued.append(time.perf_counter() - scheduled)

        await asyncio.gather(*(one(i) for i in range(n)))
        elapsed = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    lat = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    sched = np.array(queued) * 1000 if queued else np.array([np.nan])
    return {"requests": n, "rate": rate, "concurrency": concurrency, "seconds": round(elapsed, 2), "statuses": statuses,
            "throughput": round(len(latencies) / elapsed, 2), "p50_ms": round(float(np.percentile(lat, 50)), 1),
            "p95_ms": round(float(np.percentile(lat, 95)), 1), "p99_ms": round(float(np.percentile(lat, 99)), 1),
            "p50_from_schedule_ms": round(float(np.percentile(sched, 50)), 1), "p99_from_schedule_ms": round(float(np.percentile(sched, 99)), 1),
            "retry_after": sorted(set(retry_after))[:3],
            "generator_cpu_s": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 2)}


def measure(server: Server, payloads: list[dict], concurrency: int, seconds: float, rate: float, cap: bool = True) -> dict[str, Any]:
    cpu = server.cpu_seconds()
    row = asyncio.run(open_loop(server.url, payloads, rate, seconds, concurrency, cap))
    row["server_cpu_s"] = round(server.cpu_seconds() - cpu, 2)
    return row


def in_process(checkpoint: Path, sample_studies: list, seconds: float) -> dict[str, Any]:
    """The decode -> model -> postprocess path of the endpoint, called directly, one study at a time."""
    from mmapps.plugins import get_domain
    from mmapps.serve import request_roots
    from mmapps.serve.auth import KeyStore
    from mmapps.serve.pipeline import job_config
    from mmapps.serve.service import build_state, close_state
    from mmapps.serve.state import ServiceSettings

    domain = get_domain("medical")
    keys = KeyStore.load(None, {"MMAPPS_API_KEYS": f"bench:predict:{PREDICT}"})
    state = build_state(domain, checkpoint, ServiceSettings(max_batch_size=1, decode_workers=1), keys=keys)
    runner = state.versions.get().runner
    findings = list(runner.labels["findings"])
    times = []
    try:
        start = time.perf_counter()
        i = 0
        while time.perf_counter() - start < seconds:
            files, note = sample_studies[i % len(sample_studies)]
            t0 = time.perf_counter()
            written = request_roots.medical_root([d for _, d in files], note, None, findings, None)
            job = {"domain": "medical", "config": job_config(runner, written), "root": str(written.root), "reader": written.reader,
                   "caps": {"max_pixels": state.settings.max_pixels, "max_frames": state.settings.max_frames, "max_points": state.settings.max_points}}
            if written.deidentify:
                job["deid_key"] = state.extra["deid_key"].hex()
            try:
                samples = state.decoders.decode(job)
            finally:
                written.cleanup()
            runner.predict(samples)
            times.append(time.perf_counter() - t0)
            i += 1
        elapsed = time.perf_counter() - start
    finally:
        close_state(state)
    ms = np.array(times) * 1000
    return {"requests": len(times), "throughput": round(len(times) / elapsed, 2), "p50_ms": round(float(np.median(ms)), 1),
            "p95_ms": round(float(np.percentile(ms, 95)), 1)}


def auth_counts(url: str, payload: dict, n: int = 10) -> dict[str, dict[str, int]]:
    import httpx

    out: dict[str, dict[str, int]] = {}
    cases = {"no key": ("/v1/medical/predict", {}), "wrong key": ("/v1/medical/predict", {"Authorization": "Bearer " + "x" * 32}),
             "predict key on /metrics (admin)": ("/metrics", {"Authorization": f"Bearer {PREDICT}"}),
             "key in the query string only": (f"/v1/medical/predict?api_key={PREDICT}", {})}
    with httpx.Client(base_url=url, timeout=60) as client:
        for name, (path, headers) in cases.items():
            counts: dict[str, int] = {}
            for _ in range(n):
                if path == "/metrics":
                    r = client.get(path, headers=headers)
                else:
                    r = client.post(path, headers=headers, files=payload["files"], data=payload["data"])
                counts[str(r.status_code)] = counts.get(str(r.status_code), 0) + 1
            out[name] = counts
    return out


def bad_inputs(url: str, study: tuple, max_body_mb: float) -> list[list[Any]]:
    import httpx

    files, note = study
    good = files[0][1]
    cases = {
        "corrupt DICOM (random bytes)": {"files": [("dicom", ("a.dcm", os.urandom(4096), "application/dicom"))], "data": {"note": note}},
        "truncated DICOM (first 600 bytes)": {"files": [("dicom", ("a.dcm", good[:600], "application/dicom"))], "data": {"note": note}},
        "PNG named .dcm": {"files": [("dicom", ("a.dcm", b"\x89PNG\r\n\x1a\n" + os.urandom(200), "application/dicom"))], "data": {"note": note}},
        "JSON body instead of multipart": {"json": {"dicom": "x", "note": note}},
        "missing dicom field": {"data": {"note": note}},
        "note only, no image field name": {"files": [("image", ("a.dcm", good, "application/dicom"))], "data": {"note": note}},
        f"upload over --max-body-mb {max_body_mb:g}": {"files": [("dicom", ("a.dcm", os.urandom(int((max_body_mb + 1) * 2**20)), "application/dicom"))]},
    }
    rows = []
    headers = {"Authorization": f"Bearer {PREDICT}"}
    with httpx.Client(base_url=url, timeout=120, headers=headers) as client:
        for name, kwargs in cases.items():
            r = client.post("/v1/medical/predict", **kwargs)
            body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
            after = client.post("/v1/medical/predict", **multipart(study)).status_code
            rows.append([name, r.status_code, body.get("class", ""), after])
    return rows


def sustained(server: Server, payloads: list[dict], rate: float, seconds: float) -> dict[str, Any]:
    import threading

    rss, stop = [], threading.Event()

    def sample() -> None:
        t0 = time.monotonic()
        while not stop.wait(5.0):
            rss.append([round(time.monotonic() - t0, 1), round(server.rss_mb(), 1)])

    thread = threading.Thread(target=sample, daemon=True)
    rss.append([0.0, round(server.rss_mb(), 1)])
    thread.start()
    row = measure(server, payloads, 32, seconds, rate, cap=False)
    stop.set()
    thread.join()
    row["rss_mb"] = rss
    values = [r for _, r in rss]
    half = len(values) // 2
    row["rss_first_half_max_mb"], row["rss_second_half_max_mb"] = max(values[: half or 1]), max(values[half:] or values)
    return row


def ray_trace(checkpoint: Path, phases: list[tuple[str, int, float]]) -> None:
    """Ray Serve's control loop under a load ramp: replica count over time (upscale 2 s, downscale 15 s, 0.5 CPU each)."""
    import threading

    import httpx

    from mmapps.serve import ray_engine
    from mmapps.serve.state import ServiceSettings

    os.environ["MMAPPS_API_KEYS"] = f"bench:predict:{PREDICT};ops:admin:{ADMIN}"  # inherited by the local replicas
    port = free_port()
    options = ray_engine.RayOptions(port=port, num_cpus=0.5, local_cpus=2, min_replicas=1, max_replicas=4, target_ongoing_requests=1,
                                    max_ongoing_requests=4, upscale_delay_s=2, downscale_delay_s=15, metrics_interval_s=0.5, look_back_period_s=2)
    builder = ray_engine.ReplicaApp("medical", str(checkpoint.resolve()), ServiceSettings(decode_workers=1, max_batch_size=1, rate_per_key=0),
                                    None, str(Path(tempfile.mkdtemp()) / "audit.jsonl"))
    t0 = time.perf_counter()
    for attempt in range(1, 5):  # Ray waits 30 s (fixed) for its raylet: a machine at load 30 can miss that
        try:
            ray_engine.deploy(builder, options)
            break
        except Exception as err:
            print(f"Ray start attempt {attempt} failed: {type(err).__name__}: {str(err)[:120]}", flush=True)
            ray_engine.shutdown()
            if attempt == 4:
                raise
    startup = time.perf_counter() - t0
    payloads = [multipart(s) for s in studies(checkpoint, 8)]
    rows, marks, stop, phase = [], [], threading.Event(), {"name": "idle"}
    start = time.monotonic()

    def logger() -> None:
        while not stop.wait(0.5):
            c = ray_engine.replica_counts()
            rows.append({"t": round(time.monotonic() - start, 1), "phase": phase["name"], "running": c.get("RUNNING", 0),
                         "starting": c.get("STARTING", 0), "stopping": c.get("STOPPING", 0)})

    async def clients(n: int, seconds: float) -> dict[str, int]:
        statuses: dict[str, int] = {}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120, headers={"Authorization": f"Bearer {PREDICT}"}) as client:
            end = time.monotonic() + seconds

            async def loop(i: int) -> None:
                while time.monotonic() < end:
                    p = payloads[i % len(payloads)]
                    try:
                        code = str((await client.post("/v1/medical/predict", files=p["files"], data=p["data"])).status_code)
                    except httpx.HTTPError as err:
                        code = type(err).__name__
                    statuses[code] = statuses.get(code, 0) + 1

            await asyncio.gather(*(loop(i) for i in range(n)))
        return statuses

    thread = threading.Thread(target=logger, daemon=True)
    thread.start()
    try:
        for name, concurrency, seconds in phases:
            phase["name"] = name
            marks.append({"phase": name, "t": round(time.monotonic() - start, 1), "concurrency": concurrency})
            if concurrency:
                marks[-1]["statuses"] = asyncio.run(clients(concurrency, seconds))
            else:
                time.sleep(seconds)
    finally:
        stop.set()
        thread.join()
        ray_engine.shutdown()
    peak = max(r["running"] for r in rows)
    end_running = rows[-1]["running"]
    payload = {"machine": machine(), "ray_start_and_deploy_s": round(startup, 1), "options": vars(options), "phases": marks, "trace": rows,
               "peak_running": peak, "running_at_end": end_running, "load_at_start": os.getloadavg()}
    md = [(f"# Ray Serve autoscaling trace (medical)\n\n`python benchmarks/serve_load.py --checkpoint {checkpoint} --ray-trace`\n\n"
          "Local Ray (loopback, dashboard off, token auth), 0.5 CPU per replica, 1-4 replicas, target 1 ongoing request, upscale delay 2 s, "
          "downscale delay 15 s. On 2 cores **shared with 7 other engineers** this proves the control loop, not capacity: more replicas "
          f"do not add cores.\n\nRay start + first deployment: {startup:.1f} s. Peak running replicas {peak}, at the end {end_running}.\n"),
          table(["phase", "starts at s", "concurrency", "statuses"], [[m["phase"], m["t"], m["concurrency"], m.get("statuses", "")] for m in marks]),
          "\nReplica count over time (every 2 s):\n",
          table(["t s", "phase", "running", "starting", "stopping"], [[r["t"], r["phase"], r["running"], r["starting"], r["stopping"]] for r in rows[::4]])]
    print(write_results("serve_ray_autoscale", payload, "\n".join(md)))


def arm(function: Any, *args: Any) -> Any:
    """Run one arm; a failure is recorded (and printed) instead of losing the other arms' results."""
    try:
        return function(*args)
    except Exception as err:  # noqa: BLE001
        print(f"{function.__name__} failed: {type(err).__name__}: {err}", flush=True)
        return {"error": f"{type(err).__name__}: {err}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--ray-trace", action="store_true", help="only the Ray Serve autoscaling trace")
    parser.add_argument("--seconds", type=float, default=20.0, help="per load arm")
    parser.add_argument("--sustained-s", type=float, default=600.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args()
    if args.ray_trace:
        ray_trace(args.checkpoint, [("idle", 0, 5.0), ("ramp c=2", 2, 15.0), ("ramp c=6", 6, 25.0), ("stopped", 0, 45.0)])
        return
    sample = studies(args.checkpoint)
    payloads = [multipart(s) for s in sample]
    started = time.time()
    load = os.getloadavg()
    results: dict[str, Any] = {"machine": machine(), "checkpoint": str(args.checkpoint), "load_at_start": load,
                               "note": "loopback on a 2-core machine shared with 7 other engineers' jobs: figures are relative, not capacity"}
    results["in_process"] = in_process(args.checkpoint, sample, args.seconds)
    capacity = results["in_process"]["throughput"]
    rows = []
    for batch in (1, 8):
        server = Server(args.checkpoint, batch)
        try:
            for c in args.concurrency:
                rate = max(capacity * 20, 10.0)  # far over capacity: the in-flight cap, not the schedule, sets the load
                row = measure(server, payloads, c, args.seconds, rate)
                row["batch"] = batch
                rows.append(row)
                print(row, flush=True)
            if batch == 8:
                best = max(r["throughput"] for r in rows if r["batch"] == 8)
                results["above_capacity"] = arm(measure, server, payloads, 64, min(args.seconds, 10), 2 * best)
                results["auth"] = arm(auth_counts, server.url, payloads[0])
                results["sustained"] = arm(sustained, server, payloads, 0.7 * best, args.sustained_s)
        finally:
            server.stop()
    results["http"] = rows
    server = Server(args.checkpoint, 8, ["--max-body-mb", "2"])
    try:
        results["bad_input"] = arm(bad_inputs, server.url, sample[0], 2.0)
    finally:
        server.stop()
    c1 = next(r for r in rows if r["batch"] == 1 and r["concurrency"] == 1)
    by = {(r["batch"], r["concurrency"]): r for r in rows}
    results["goals"] = {
        "throughput_vs_in_process": round(max(r["throughput"] for r in rows) / capacity, 2) if capacity else None,
        "http_overhead_p50_ms": round(c1["p50_ms"] - results["in_process"]["p50_ms"], 1),
        "batching_speedup_c32": round(by[(8, 32)]["throughput"] / by[(1, 32)]["throughput"], 2) if (8, 32) in by and (1, 32) in by else None,
    }
    results["wall_s"] = round(time.time() - started, 1)
    write_results("serve_load_medical", results, "(the Markdown is written after the JSON; see the JSON if this line stays)")
    md = [(f"# serve_load (medical)\n\n`python benchmarks/serve_load.py --checkpoint {args.checkpoint} --seconds {args.seconds:g} "
          f"--sustained-s {args.sustained_s:g}`\n\nLoopback, one uvicorn process, on a 2-core machine **shared with 7 other engineers** "
          f"(load average at start {load[0]:.1f}): the figures compare arms run minutes apart, not the hardware's capacity.\n"),
          (f"In-process (decode child + model + postprocess, one at a time): {results['in_process']['throughput']} req/s, "
          f"p50 {results['in_process']['p50_ms']} ms.\n"),
          table(["batch", "concurrency", "req/s", "p50 ms", "p95 ms", "p99 ms", "statuses", "generator CPU s", "server CPU s"],
                [[r["batch"], r["concurrency"], r["throughput"], r["p50_ms"], r["p95_ms"], r["p99_ms"], r["statuses"], r["generator_cpu_s"], r["server_cpu_s"]] for r in rows]),
          (f"\nGoals: throughput vs in-process {results['goals']['throughput_vs_in_process']} (goal >= 0.7); HTTP overhead p50 "
          f"{results['goals']['http_overhead_p50_ms']} ms (goal <= 10); batching at concurrency 32: {results['goals']['batching_speedup_c32']}x (goal >= 1.5).\n"),
          f"\nAbove capacity (2x, concurrency 64): statuses {results['above_capacity']['statuses']}, Retry-After {results['above_capacity']['retry_after']}.\n",
          "\nAuth (10 requests each):\n", table(["case", "statuses"], [[k, v] for k, v in results["auth"].items()]),
          "\nBad input (then one good request):\n", table(["input", "status", "class", "next good request"], results["bad_input"]),
          (f"\nSustained {args.sustained_s:g} s at 70 % of capacity ({results['sustained']['rate']:.2f} req/s): statuses "
          f"{results['sustained']['statuses']}, p50 {results['sustained']['p50_from_schedule_ms']} ms, p99 {results['sustained']['p99_from_schedule_ms']} ms "
          "(from the scheduled time); server RSS max "
          f"first half {results['sustained']['rss_first_half_max_mb']} MB, second half {results['sustained']['rss_second_half_max_mb']} MB.\n")]
    print(write_results("serve_load_medical", results, "\n".join(md)))


if __name__ == "__main__":
    main()
