"""Load test of ``mmapps <domain> serve``: an httpx generator against a local server (loopback), vs the same path in process.

    python benchmarks/serve_load.py --domain medical --checkpoint RUN/checkpoints/best.safetensors [--window-s 4] [--repeats 5]
    python benchmarks/serve_load.py --domain medical --checkpoint ... --only sustained --sustained-s 600

Arms, for the server without batching (``--max-batch-size 1``) and with (``8``), each a fresh
``mmapps <domain> serve`` subprocess on 127.0.0.1, beside an **in-process** service built in this
process with the *same settings* (same decoder pool size, same batcher, same admission):

- **in-process** (the baseline): the endpoint's own decode -> model -> postprocess path
  (``domains/<d>/serve.py`` ``request_root`` -> `mmapps.serve.pipeline.serve_root`: decoder child,
  micro-batcher, the domain's post-processing), called with the same concurrency, no HTTP;
- **HTTP**: the same requests as multipart uploads to ``POST /v1/<domain>/predict``.

At each concurrency (1, 8, 32) the two are **alternated** (HTTP, in-process, in-process, HTTP...)
for ``--repeats`` windows: ``c`` closed-loop workers, the first ``c`` answers discarded (the
pipeline fills), the answers of the next ``--window-s`` seconds counted. Throughput: median and p95
over the windows; latency p50/p95/p99 over every counted answer. **HTTP overhead p50** = HTTP p50
- in-process p50 at concurrency 1, and, paired per request, each HTTP answer's latency minus the server's own
decode -> model time for it (the ``Server-Timing: pipeline`` header): the HTTP p50/p95 overhead, free of the
model's jitter (``--only overhead`` measures just that, at concurrency 1). The generator's own CPU (getrusage) is reported for the HTTP
windows, the server's (psutil, decoder children included) beside it.

Then, on the batching server: **above capacity** (an open-loop burst at 6x the measured capacity for 10 s:
503 + Retry-After from load shedding, no other 5xx), **auth** (no key, wrong key, wrong scope,
key in the query string), the **bad-input matrix** (status, class, then the next good request),
and the **profile** (decode / batcher / answer time per request in process, mean model batch size
from the server's /metrics). ``--sustained-s`` (>= 70 % of the measured capacity, RSS every 5 s)
runs only when asked. Results: ``benchmarks/results/serve_load_<domain>.{json,md}``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine, write_results
from serve_load_cases import CASES, LoadCase
from serve_load_report import markdown

PREDICT, ADMIN = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
KEYS = f"bench:predict:{PREDICT};ops:admin:{ADMIN}"
MAX_BODY_MB = 8.0  # above the largest good request (a KITTI frame: 1.5 MB of points + 0.6 MB PNG)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``mmapps <domain> serve`` in a subprocess on loopback, with a predict and an admin key."""

    def __init__(self, domain: str, checkpoint: Path, batch: int, extra: list[str] | None = None) -> None:
        import httpx
        import psutil

        self.port, self.dir = free_port(), Path(tempfile.mkdtemp(prefix="serve-load-"))
        cmd = [sys.executable, "-m", "mmapps", domain, "serve", "--checkpoint", str(checkpoint), "--port", str(self.port),
               "--max-batch-size", str(batch), "--rate", "0", "--max-body-mb", str(MAX_BODY_MB), "--audit-log", str(self.dir / "audit.jsonl"), *(extra or [])]
        self.log = open(self.dir / "server.log", "w")  # noqa: SIM115  # closed in stop()
        self.proc = subprocess.Popen(cmd, env={**os.environ, "MMAPPS_API_KEYS": KEYS}, stdout=self.log, stderr=subprocess.STDOUT)
        self.ps, self.url = psutil.Process(self.proc.pid), f"http://127.0.0.1:{self.port}"
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
        total = 0.0
        for p in [self.ps, *self.ps.children(recursive=True)]:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except Exception:  # noqa: BLE001, S110  # a decoder child that just exited
                pass
        return total

    def rss_mb(self) -> float:
        return self.ps.memory_info().rss / 2**20

    def metrics(self) -> str:
        import httpx

        return httpx.get(self.url + "/metrics", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30).text

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


class InProcess:
    """The endpoint's decode -> model -> postprocess path in this process, with the server's settings."""

    def __init__(self, case: LoadCase, checkpoint: Path, batch: int) -> None:
        from mmapps.plugins import get_domain
        from mmapps.serve.auth import KeyStore
        from mmapps.serve.service import build_state
        from mmapps.serve.state import NullMetrics, ServiceSettings

        self.case = case
        settings = ServiceSettings(max_batch_size=batch, rate_per_key=0)  # the CLI's defaults otherwise (2 decoders, 5 ms delay)
        self.state = build_state(get_domain(case.domain), checkpoint, settings, keys=KeyStore.load(None, {"MMAPPS_API_KEYS": KEYS}), metrics=NullMetrics())
        self.runner = self.state.versions.get().runner
        self.stages: list[tuple[float, float, float]] = []  # (decode s, batcher s, answer s) per request, --profile

    async def call(self, payload: dict) -> tuple[int, None]:
        from mmapps.serve.pipeline import serve_root
        from mmapps.serve.routes_predict import answer_header

        request = SimpleNamespace(state=SimpleNamespace(request_id="bench"))
        served = await serve_root(self.state, request, self.case.to_root(payload, self.runner), None)
        answer = {**answer_header(served, request), "predictions": [p.tasks for p in served.predictions]}
        return (200 if answer["predictions"] else 500), None  # the senders' (status, server pipeline s) contract; no HTTP here

    def close(self) -> None:
        from mmapps.serve.service import close_state

        close_state(self.state)


async def window(send: Any, payloads: list[dict], concurrency: int, seconds: float) -> dict[str, Any]:
    """``concurrency`` closed-loop workers; the first ``concurrency`` answers fill the pipeline, the next ``seconds`` are counted."""
    done, latencies, overheads, statuses, state = [0], [], [], {}, {"start": None, "end": None}

    async def worker(i: int) -> None:
        k = i
        while state["end"] is None or time.perf_counter() < state["end"]:
            t0 = time.perf_counter()
            pipeline = None
            try:
                status, pipeline = await send(payloads[k % len(payloads)])
                code = str(status)
            except Exception as err:  # noqa: BLE001  # a client-side failure is a result, not a crash
                code = type(err).__name__
            t1 = time.perf_counter()
            k += concurrency
            done[0] += 1
            if state["start"] is None and done[0] >= concurrency:
                state["start"], state["end"] = t1, t1 + seconds
            elif state["start"] is not None and t1 <= state["end"]:
                statuses[code] = statuses.get(code, 0) + 1
                if code == "200":
                    latencies.append(t1 - t0)
                    if pipeline is not None:
                        overheads.append(t1 - t0 - pipeline)

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return {"answers": latencies, "overheads": overheads, "statuses": statuses, "seconds": seconds}


def http_sender(client: Any, endpoint: str) -> Any:
    """Posts one request; returns its status and the server's decode -> model time (Server-Timing ``pipeline``, seconds)."""

    async def send(payload: dict) -> tuple[int, float | None]:
        r = await client.post(endpoint, **payload)
        timing = dict(part.strip().split(";dur=", 1) for part in r.headers.get("server-timing", "").split(",") if ";dur=" in part)
        return r.status_code, float(timing["pipeline"]) / 1000 if "pipeline" in timing else None

    return send


async def http_window(url: str, case: LoadCase, concurrency: int, seconds: float) -> dict[str, Any]:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=300, headers={"Authorization": f"Bearer {PREDICT}"}) as client:
        return await window(http_sender(client, case.endpoint), case.payloads, concurrency, seconds)


def summarise(windows: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [len(w["answers"]) / w["seconds"] for w in windows]
    lat = np.array([x for w in windows for x in w["answers"]]) * 1000 if any(w["answers"] for w in windows) else np.array([np.nan])
    statuses: dict[str, int] = {}
    for w in windows:
        for k, v in w["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    pct = lambda q: round(float(np.percentile(lat, q)), 1)
    overheads = np.array([x for w in windows for x in w.get("overheads", [])]) * 1000
    if overheads.size:  # each request's own latency minus its own server pipeline time: paired, so the model's jitter cancels
        per_request = {"overhead_p50_ms": round(float(np.median(overheads)), 2), "overhead_p95_ms": round(float(np.percentile(overheads, 95)), 2)}
    else:
        per_request = {}
    return {**per_request, "throughput": round(float(np.median(rates)), 2), "throughput_p95": round(float(np.percentile(rates, 95)), 2),
            "throughput_windows": [round(r, 2) for r in rates], "answers": int(lat.size if np.isfinite(lat).all() else 0),
            "p50_ms": pct(50), "p95_ms": pct(95), "p99_ms": pct(99), "statuses": statuses}


def load_arms(case: LoadCase, checkpoint: Path, batch: int, concurrencies: list[int], repeats: int, seconds: float, results: dict, profiled: bool = True) -> Server:
    """Both arms, alternated, at each concurrency; returns the (still running) server."""
    server, local = Server(case.domain, checkpoint, batch), InProcess(case, checkpoint, batch)
    try:
        asyncio.run(window(local.call, case.payloads, 2, 0.5))  # warm both: first calls pay kernel set-up
        asyncio.run(http_window(server.url, case, 2, 0.5))
        for c in concurrencies:
            arms: dict[str, list] = {"http": [], "in_process": []}
            cpu = {"generator": 0.0, "server": 0.0, "wall": 0.0}
            for r in range(repeats):
                for arm in (("http", "in_process") if r % 2 == 0 else ("in_process", "http")):
                    if arm == "http":
                        g0, s0, w0 = resource.getrusage(resource.RUSAGE_SELF), server.cpu_seconds(), time.perf_counter()
                        arms["http"].append(asyncio.run(http_window(server.url, case, c, seconds)))
                        g1 = resource.getrusage(resource.RUSAGE_SELF)
                        cpu["generator"] += g1.ru_utime + g1.ru_stime - g0.ru_utime - g0.ru_stime
                        cpu["server"] += server.cpu_seconds() - s0
                        cpu["wall"] += time.perf_counter() - w0
                    else:
                        arms["in_process"].append(asyncio.run(window(local.call, case.payloads, c, seconds)))
            row = {"batch": batch, "concurrency": c, "http": summarise(arms["http"]), "in_process": summarise(arms["in_process"]),
                   "generator_cpu_s": round(cpu["generator"], 2), "generator_cpu_share": round(cpu["generator"] / max(cpu["wall"], 1e-9), 3),
                   "server_cpu_s": round(cpu["server"], 2), "http_wall_s": round(cpu["wall"], 1)}
            results["rows"].append(row)
            print({k: v for k, v in row.items()}, flush=True)
        if batch > 1 and profiled:
            results["profile"] = profile(local, case, server, max(concurrencies))
    except BaseException:
        server.stop()
        raise
    finally:
        local.close()
    return server


def profile(local: InProcess, case: LoadCase, server: Server, concurrency: int) -> dict[str, Any]:
    """Where a request's time goes at ``concurrency``: decode child, batcher (queue + model), answer; the server's batch sizes."""
    import re

    state = local.state
    decode, times = state.decoders.decode, {"decode": [], "model": []}

    def timed_decode(job: dict) -> Any:
        t0 = time.perf_counter()
        try:
            return decode(job)
        finally:
            times["decode"].append(time.perf_counter() - t0)

    loaded = state.versions.get()
    submit = loaded.batcher.submit

    async def timed_submit(samples: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return await submit(samples)
        finally:
            times["model"].append(time.perf_counter() - t0)

    state.decoders.decode, loaded.batcher.submit = timed_decode, timed_submit
    try:
        w = asyncio.run(window(local.call, case.payloads, concurrency, 4.0))
    finally:
        state.decoders.decode, loaded.batcher.submit = decode, submit
    batches = loaded.batcher.batches[-200:]
    text = server.metrics()
    size_sum = sum(float(m) for m in re.findall(r'^mmapps_batch_size_sum\{model="[^"]+"\} (\S+)', text, re.MULTILINE))
    size_count = sum(float(m) for m in re.findall(r'^mmapps_batch_size_count\{model="[^"]+"\} (\S+)', text, re.MULTILINE))
    total = float(np.median(w["answers"])) if w["answers"] else float("nan")
    return {"concurrency": concurrency, "request_p50_ms": round(total * 1000, 1),
            "decode_p50_ms": round(float(np.median(times["decode"])) * 1000, 1) if times["decode"] else None,
            "batcher_p50_ms": round(float(np.median(times["model"])) * 1000, 1) if times["model"] else None,
            "in_process_mean_batch": round(float(np.mean(batches)), 2) if batches else None,
            "server_mean_batch": round(size_sum / size_count, 2) if size_count else None}


async def burst(url: str, case: LoadCase, rate: float, seconds: float) -> dict[str, Any]:
    """Open loop at ``rate``/s for ``seconds`` (no client-side concurrency cap): statuses and Retry-After values."""
    import httpx

    statuses, retry_after = {}, []
    limits = httpx.Limits(max_connections=1024, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=600, headers={"Authorization": f"Bearer {PREDICT}"}) as client:
        start = time.perf_counter()

        async def one(i: int) -> None:
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            try:
                r = await client.post(case.endpoint, **case.payloads[i % len(case.payloads)])
                code = str(r.status_code)
                if "retry-after" in r.headers:
                    retry_after.append(int(r.headers["retry-after"]))
            except httpx.HTTPError as err:
                code = type(err).__name__
            statuses[code] = statuses.get(code, 0) + 1

        await asyncio.gather(*(one(i) for i in range(int(rate * seconds))))
    return {"rate": round(rate, 2), "seconds": seconds, "requests": int(rate * seconds), "statuses": statuses,
            "retry_after_min_max": [min(retry_after), max(retry_after)] if retry_after else None,
            "other_5xx": sum(v for k, v in statuses.items() if k.startswith("5") and k != "503")}


def auth_counts(url: str, case: LoadCase, n: int = 10) -> dict[str, dict[str, int]]:
    import httpx

    cases = {"no key": (case.endpoint, {}), "wrong key": (case.endpoint, {"Authorization": "Bearer " + "x" * 32}),
             "predict key on /metrics (admin scope)": ("/metrics", {"Authorization": f"Bearer {PREDICT}"}),
             "key in the query string only": (f"{case.endpoint}?api_key={PREDICT}", {})}
    out: dict[str, dict[str, int]] = {}
    with httpx.Client(base_url=url, timeout=120) as client:
        for name, (path, headers) in cases.items():
            counts: dict[str, int] = {}
            for _ in range(n):
                r = client.get(path, headers=headers) if path == "/metrics" else client.post(path, headers=headers, **case.payloads[0])
                counts[str(r.status_code)] = counts.get(str(r.status_code), 0) + 1
            out[name] = counts
    return out


def bad_inputs(url: str, case: LoadCase) -> list[list[Any]]:
    import httpx

    rows = []
    with httpx.Client(base_url=url, timeout=300, headers={"Authorization": f"Bearer {PREDICT}"}) as client:
        for name, payload in case.bad.items():
            r = client.post(case.endpoint, **payload)
            body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
            after = client.post(case.endpoint, **case.payloads[0]).status_code
            rows.append([name, r.status_code, body.get("class", "") or ("presence " + str(body.get("presence")) if "presence" in body else ""), after])
    return rows


def sustained(server: Server, case: LoadCase, rate: float, seconds: float) -> dict[str, Any]:
    import threading

    rss, stop = [[0.0, round(server.rss_mb(), 1)]], threading.Event()

    def sample() -> None:
        t0 = time.monotonic()
        while not stop.wait(5.0):
            rss.append([round(time.monotonic() - t0, 1), round(server.rss_mb(), 1)])

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    g0 = resource.getrusage(resource.RUSAGE_SELF)
    row = asyncio.run(burst(server.url, case, rate, seconds))
    g1 = resource.getrusage(resource.RUSAGE_SELF)
    stop.set()
    thread.join()
    values = [r for _, r in rss]
    half = len(values) // 2
    row.update(rss_mb=rss, rss_first_half_max_mb=max(values[: half or 1]), rss_second_half_max_mb=max(values[half:] or values),
               generator_cpu_s=round(g1.ru_utime + g1.ru_stime - g0.ru_utime - g0.ru_stime, 1))
    return row


def arm(function: Any, *args: Any) -> Any:
    """Run one arm; a failure is recorded (and printed) instead of losing the other arms' results."""
    try:
        return function(*args)
    except Exception as err:  # noqa: BLE001
        print(f"{function.__name__} failed: {type(err).__name__}: {err}", flush=True)
        return {"error": f"{type(err).__name__}: {err}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--domain", choices=sorted(CASES), default="medical")
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--window-s", type=float, default=3.0, help="counted seconds per window")
    parser.add_argument("--repeats", type=int, default=5, help="windows per arm (alternated)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--sustained-s", type=float, default=0.0, help="seconds of the sustained run at --sustained-share of capacity (0: skipped)")
    parser.add_argument("--sustained-share", type=float, default=0.7)
    parser.add_argument("--only", choices=["all", "sustained", "overhead"], default="all",
                        help="sustained: only the sustained run (capacity from the last results); overhead: only concurrency 1, both batch settings, "
                             "added to the last results as `overhead`")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="serve-load-data-"))
    case = CASES[args.domain](scratch, 16, MAX_BODY_MB)
    name = f"serve_load_{args.domain}"
    command = " ".join(["python benchmarks/serve_load.py", *sys.argv[1:]])
    if args.only != "all":
        import json

        previous = json.loads((RESULTS / f"{name}.json").read_text())
    if args.only == "sustained":
        capacity = max(r["http"]["throughput"] for r in previous["rows"])
        server = Server(args.domain, args.checkpoint, 8)
        try:
            previous["sustained"] = sustained(server, case, args.sustained_share * capacity, args.sustained_s)
            previous["sustained"].update(command=command, load_at_start=os.getloadavg())
        finally:
            server.stop()
        print(write_results(name, previous, markdown(previous)))
        return
    if args.only == "overhead":
        import yaml

        config = args.checkpoint.resolve().parent.parent / "config.yaml"
        recipe = (yaml.safe_load(config.read_text()) or {}).get("recipe") if config.is_file() else None
        measured: dict[str, Any] = {"rows": [], "checkpoint": str(args.checkpoint), "recipe": recipe, "command": command, "load_at_start": [round(x, 1) for x in os.getloadavg()],
                                    "repeats": args.repeats, "window_s": args.window_s}
        for batch in (1, 8):
            load_arms(case, args.checkpoint, batch, [1], args.repeats, args.window_s, measured, profiled=False).stop()
        measured["load_at_end"] = [round(x, 1) for x in os.getloadavg()]
        previous["overhead"] = measured
        print(write_results(name, previous, markdown(previous)))
        return
    started, load = time.time(), os.getloadavg()
    results: dict[str, Any] = {"machine": machine(), "domain": args.domain, "checkpoint": str(args.checkpoint), "command": command,
                               "load_at_start": [round(x, 1) for x in load], "rows": [], "window_s": args.window_s, "repeats": args.repeats}
    load_arms(case, args.checkpoint, 1, args.concurrency, args.repeats, args.window_s, results).stop()
    server = load_arms(case, args.checkpoint, 8, args.concurrency, args.repeats, args.window_s, results)
    try:
        capacity = max(r["http"]["throughput"] for r in results["rows"])
        results["above_capacity"] = arm(lambda: asyncio.run(burst(server.url, case, max(6 * capacity, 8.0), 10.0)))
        results["auth"] = arm(auth_counts, server.url, case)
        results["bad_input"] = arm(bad_inputs, server.url, case)
        if args.sustained_s > 0:
            results["sustained"] = arm(sustained, server, case, args.sustained_share * capacity, args.sustained_s)
        results["server_rss_mb"] = round(server.rss_mb(), 1)
    finally:
        server.stop()
    results["load_at_end"] = [round(x, 1) for x in os.getloadavg()]
    results["wall_s"] = round(time.time() - started, 1)
    write_results(name, results, "(the Markdown is written from the JSON next; see the JSON if this line stays)")
    print(write_results(name, results, markdown(results)))


if __name__ == "__main__":
    main()
