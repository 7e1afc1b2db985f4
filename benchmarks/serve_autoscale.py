"""Ray Serve autoscaling trace: the replica count of ``serve --engine ray`` under an open-loop load ramp, then none.

    nice -n 10 python benchmarks/serve_autoscale.py [--checkpoint RUN/checkpoints/best.safetensors]
        [--peak-rps 6] [--ramp-s 60] [--hold-s 60] [--cooldown-s 60] [--max-replicas 4]

The service is the one ``mmapps medical serve --engine ray`` deploys (`mmapps.serve.ray_engine`:
a local Ray instance on loopback, token auth on, dashboard off), with the control loop's delays
shortened so that a trace fits in minutes: upscale after 2 s, downscale after 15 s, replicas
reporting every second over a 5 s window, 0.5 CPU per replica, 1 to ``--max-replicas``
replicas at ``--target-ongoing-requests`` each. An open-loop generator on httpx (arrivals at the
scheduled rate whatever the answers; bounded by ``--max-in-flight``, ``--timeout-s`` per request
and the phase lengths, so it stops by itself) sends one demo DICOM study with a note per request
to ``POST /v1/medical/predict``: a warm phase at ``--base-rps``, a linear ramp to
``--peak-rps``, a hold, then no load for ``--cooldown-s``. Every ``--interval-s`` the replica
count by state (``serve.status()``, Ray Serve's status API) is logged next to the offered load,
the throughput, the latency of the answers completed in that second and the errors.

Results: ``benchmarks/results/serve_ray_autoscale.{json,md,png}``. On this 2-core machine the
trace proves the mechanism (the count rises under load and falls after it), not capacity: the
replicas share the same two cores, so more replicas add little throughput here.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import secrets
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine, table, write_results

DEFAULT_CHECKPOINT = Path("/tmp/s3/ckpt/medical/checkpoints/best.safetensors")
NAME = "serve_ray_autoscale"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, default=None, help=f"medical checkpoint (default {DEFAULT_CHECKPOINT}, else a smoke run)")
    p.add_argument("--base-rps", type=float, default=0.5)
    p.add_argument("--peak-rps", type=float, default=6.0)
    p.add_argument("--warm-s", type=float, default=15.0)
    p.add_argument("--ramp-s", type=float, default=60.0)
    p.add_argument("--hold-s", type=float, default=60.0)
    p.add_argument("--cooldown-s", type=float, default=75.0, help="no load; the count should fall (downscale delay 15 s)")
    p.add_argument("--max-replicas", type=int, default=4)
    p.add_argument("--target-ongoing-requests", type=float, default=2.0)
    p.add_argument("--num-cpus", type=float, default=0.5)
    p.add_argument("--upscale-delay-s", type=float, default=2.0)
    p.add_argument("--downscale-delay-s", type=float, default=15.0)
    p.add_argument("--max-in-flight", type=int, default=64, help="the generator's bound; arrivals beyond it are counted as not sent")
    p.add_argument("--timeout-s", type=float, default=60.0)
    p.add_argument("--interval-s", type=float, default=1.0)
    p.add_argument("--port", type=int, default=8011)
    p.add_argument("--out", default=NAME)
    return p.parse_args(argv)


def offered_rate(t: float, a: argparse.Namespace) -> float:
    """Requests per second the schedule offers at ``t`` seconds after the load starts."""
    if t < a.warm_s:
        return a.base_rps
    if t < a.warm_s + a.ramp_s:
        return a.base_rps + (a.peak_rps - a.base_rps) * (t - a.warm_s) / a.ramp_s
    if t < a.warm_s + a.ramp_s + a.hold_s:
        return a.peak_rps
    return 0.0


def arrivals(a: argparse.Namespace) -> list[float]:
    """Send times of the open-loop schedule (deterministic: the integral of the rate reaches each next request)."""
    times, owed, t, step = [], 0.0, 0.0, 0.01
    load_s = a.warm_s + a.ramp_s + a.hold_s
    while t < load_s:
        owed += offered_rate(t, a) * step
        while owed >= 1.0:
            times.append(t)
            owed -= 1.0
        t += step
    return times


def checkpoint_and_study(a: argparse.Namespace, work: Path) -> tuple[Path, bytes, str]:
    """The checkpoint (default recipe if present, else a smoke run trained here) and one demo DICOM study."""
    from mmapps.domain import resolve
    from mmapps.plugins import get_domain
    from mmapps.serve import testkit

    domain = get_domain("medical")
    checkpoint = a.checkpoint or (DEFAULT_CHECKPOINT if DEFAULT_CHECKPOINT.is_file() else None)
    recipe = "default" if checkpoint is not None else "smoke (trained here: no default-recipe checkpoint found)"
    if checkpoint is None:
        checkpoint = testkit.smoke_checkpoint(domain, work)
    root = resolve(domain.write_demo_data)(work / "demo", 4, 0)
    return Path(checkpoint), min(Path(root).rglob("*.dcm")).read_bytes(), recipe


async def drive(url: str, study: bytes, headers: dict[str, str], a: argparse.Namespace, t0: float) -> list[dict[str, Any]]:
    """Open-loop load: each scheduled request is sent at its time; returns one record per scheduled request."""
    import httpx

    records: list[dict[str, Any]] = []
    in_flight = 0
    limits = httpx.Limits(max_connections=a.max_in_flight, max_keepalive_connections=a.max_in_flight)

    async with httpx.AsyncClient(base_url=url, timeout=a.timeout_s, limits=limits) as client:

        async def one(scheduled: float) -> None:
            nonlocal in_flight
            record: dict[str, Any] = {"scheduled": scheduled}
            records.append(record)
            if in_flight >= a.max_in_flight:
                record["status"] = "not_sent"
                return
            in_flight += 1
            sent = time.perf_counter()
            record["sent"] = sent - t0
            try:
                r = await client.post("/v1/medical/predict", headers=headers, files=[("dicom", ("study.dcm", study, "application/dicom"))],
                                      data={"note": "INDICATION: cough."})
                record["status"] = r.status_code
            except httpx.HTTPError as err:
                record["status"] = type(err).__name__
            finally:
                in_flight -= 1
            record["done"] = time.perf_counter() - t0
            record["latency_s"] = time.perf_counter() - sent

        tasks = []
        for scheduled in arrivals(a):
            delay = t0 + scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(scheduled)))
        await asyncio.gather(*tasks)
    return records


def poll_replicas(stop: threading.Event, rows: list[dict[str, Any]], t0: float, interval_s: float) -> None:
    from mmapps.serve import ray_engine

    while not stop.is_set():
        counts = ray_engine.replica_counts()
        rows.append({"t": round(time.perf_counter() - t0, 2), **{k.lower(): v for k, v in counts.items()}})
        stop.wait(interval_s)


def timeline(records: list[dict[str, Any]], replicas: list[dict[str, Any]], a: argparse.Namespace, end_s: float) -> list[dict[str, Any]]:
    """One row per interval: offered load, answers and their latency, errors, replicas by state."""
    rows = []
    for start in np.arange(0.0, end_s, a.interval_s):
        stop = start + a.interval_s
        done = [r for r in records if "done" in r and start <= r["done"] < stop]
        ok = [r for r in done if r["status"] == 200]
        lat = np.array([r["latency_s"] for r in ok]) * 1000
        seen = [r for r in replicas if start <= r["t"] < stop] or [min(replicas, key=lambda r: abs(r["t"] - start))]
        last = seen[-1]
        rows.append({
            "t": round(float(start), 2),
            "offered_rps": round(offered_rate(float(start), a), 3) if start < a.warm_s + a.ramp_s + a.hold_s else 0.0,
            "sent": sum(1 for r in records if "sent" in r and start <= r["sent"] < stop),
            "ok_per_s": len(ok) / a.interval_s,
            "errors": len(done) - len(ok),
            "not_sent": sum(1 for r in records if r["status"] == "not_sent" and start <= r["scheduled"] < stop),
            "p50_ms": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
            "p95_ms": round(float(np.percentile(lat, 95)), 1) if len(lat) else None,
            "running": last.get("running", 0), "starting": last.get("starting", 0), "stopping": last.get("stopping", 0),
        })
    return rows


def summarize(rows: list[dict[str, Any]], records: list[dict[str, Any]], a: argparse.Namespace) -> dict[str, Any]:
    load_end = a.warm_s + a.ramp_s + a.hold_s
    initial = rows[0]["running"]
    during = [r for r in rows if r["t"] < load_end]
    # the autoscaler's decision is the target (running + starting); a replica may take minutes to start on a loaded machine
    first_up = next((r["t"] for r in during if r["running"] + r["starting"] > initial), None)
    peak = max(r["running"] for r in rows)
    peak_t = next(r["t"] for r in rows if r["running"] == peak)
    after_peak = [r for r in rows if r["t"] > peak_t]
    final = rows[-1]["running"]
    fell_at = next((r["t"] for r in after_peak if r["running"] < peak), None)
    statuses: dict[str, int] = {}
    for r in records:
        statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
    ok = np.array([r["latency_s"] for r in records if r.get("status") == 200]) * 1000
    return {"initial_replicas": initial, "peak_running": peak, "peak_at_s": peak_t, "first_upscale_at_s": first_up,
            "first_running_above_initial_s": next((r["t"] for r in rows if r["running"] > initial), None),
            "load_stopped_at_s": load_end, "first_below_peak_after_load_s": fell_at, "final_running": final,
            "rose": first_up is not None and peak > initial, "fell": final < peak, "requests": len(records), "statuses": statuses,
            "latency_ms": {"p50": float(np.percentile(ok, 50)), "p95": float(np.percentile(ok, 95)), "p99": float(np.percentile(ok, 99))} if len(ok) else None}


def plot(rows: list[dict[str, Any]], a: argparse.Namespace, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    t = [r["t"] for r in rows]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    top.plot(t, [r["offered_rps"] for r in rows], label="offered req/s")
    top.plot(t, [r["ok_per_s"] for r in rows], label="answered (200) req/s")
    top.set_ylabel("requests / s")
    top.legend(loc="upper left")
    p95 = [r["p95_ms"] / 1000 if r["p95_ms"] is not None else np.nan for r in rows]
    twin = top.twinx()
    twin.plot(t, p95, color="grey", linestyle=":", label="p95 latency (s)")
    twin.set_ylabel("p95 latency (s)")
    bottom.step(t, [r["running"] for r in rows], where="post", label="RUNNING replicas")
    bottom.step(t, [r["starting"] for r in rows], where="post", label="STARTING", linestyle="--")
    bottom.axvline(a.warm_s + a.ramp_s + a.hold_s, color="black", linewidth=0.8, label="load stops")
    bottom.set_ylabel("replicas")
    bottom.set_xlabel("seconds since the load started")
    bottom.legend(loc="upper left")
    fig.suptitle("Ray Serve autoscaling under an open-loop ramp (2-core machine: the mechanism, not capacity)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def markdown(payload: dict[str, Any]) -> str:
    s, cfg = payload["summary"], payload["config"]
    rows = payload["timeline"]
    sample = rows[:: max(1, len(rows) // 60)]
    lat = s["latency_ms"] or {}
    return "\n".join([
        "# Ray Serve autoscaling trace (`serve --engine ray`, medical)",
        "",
        f"Command: `{payload['command']}`",
        "",
        ("**On this 2-core machine (shared with other jobs) this proves the mechanism, not capacity**: Ray Serve's "
        "autoscaler adds replicas while the ongoing requests per replica exceed the target and removes them after the load "
        "stops; every replica shares the same two cores, so extra replicas add little throughput here and the latencies "
        "below are not capacity figures."),
        "",
        (f"Model: medical, {payload['recipe']} recipe checkpoint `{payload['checkpoint']}`. Deployment: 1 to {cfg['max_replicas']} "
        f"replicas, {cfg['num_cpus']} CPU each, target {cfg['target_ongoing_requests']} ongoing requests per replica, upscale delay "
        f"{cfg['upscale_delay_s']} s, downscale delay {cfg['downscale_delay_s']} s, metrics every {cfg['metrics_interval_s']} s over "
        f"{cfg['look_back_period_s']} s. Load: open loop on httpx over loopback, `POST /v1/medical/predict` (one DICOM + note), "
        f"{cfg['base_rps']} req/s for {cfg['warm_s']} s, ramp to {cfg['peak_rps']} req/s over {cfg['ramp_s']} s, hold {cfg['hold_s']} s, "
        f"then none for {cfg['cooldown_s']} s (at most {cfg['max_in_flight']} in flight, {cfg['timeout_s']} s timeout)."),
        "",
        "## Result",
        "",
        table(["what", "value"], [
            ["replicas at start", s["initial_replicas"]],
            ["first scale-up decision: replicas starting (s after load start)", s["first_upscale_at_s"]],
            ["first added replica RUNNING (s)", s.get("first_running_above_initial_s")],
            ["peak RUNNING replicas (at s)", f"{s['peak_running']} (at {s['peak_at_s']})"],
            ["offered load stopped at (s)", s["load_stopped_at_s"]],
            ["first below peak after it (s)", s["first_below_peak_after_load_s"]],
            ["RUNNING replicas at the end", s["final_running"]],
            ["count rose under load / fell after", f"{s['rose']} / {s['fell']}"],
            ["requests scheduled", s["requests"]],
            ["outcomes", ", ".join(f"{k}: {v}" for k, v in sorted(s["statuses"].items()))],
            ["latency of 200s p50 / p95 / p99 (ms)", f"{lat.get('p50', float('nan')):.0f} / {lat.get('p95', float('nan')):.0f} / {lat.get('p99', float('nan')):.0f}"],
            ["generator CPU (s) / wall (s)", f"{payload['generator_cpu_s']:.1f} / {payload['wall_s']:.1f}"],
            ["Ray start + first replica ready (s)", f"{payload['deploy_s']:.1f}"],
        ]),
        "",
        f"![replica count over time]({payload['plot']})" if payload.get("plot") else "",
        "",
        "## Timeline (every few seconds; the JSON has every interval)",
        "",
        table(["t (s)", "offered req/s", "sent", "200/s", "errors", "not sent", "p50 ms", "p95 ms", "running", "starting", "stopping"],
              [[r["t"], r["offered_rps"], r["sent"], r["ok_per_s"], r["errors"], r["not_sent"], r["p50_ms"] if r["p50_ms"] is not None else "",
                r["p95_ms"] if r["p95_ms"] is not None else "", r["running"], r["starting"], r["stopping"]] for r in sample]),
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    import tempfile

    import httpx

    from mmapps.serve import ray_engine
    from mmapps.serve.ray_replica import ReplicaApp
    from mmapps.serve.state import ServiceSettings

    work = Path(tempfile.mkdtemp(prefix="serve-autoscale-"))
    checkpoint, study, recipe = checkpoint_and_study(a, work)
    predict = secrets.token_urlsafe(24)
    os.environ["MMAPPS_API_KEYS"] = f"load:predict:{predict}"  # inherited by the local Ray's replicas
    settings = ServiceSettings(decode_workers=1, rate_per_key=0, max_batch_size=4, max_batch_delay_ms=5, request_timeout_s=a.timeout_s)
    options = ray_engine.RayOptions(port=a.port, min_replicas=1, max_replicas=a.max_replicas, target_ongoing_requests=a.target_ongoing_requests,
                                    max_ongoing_requests=8, num_cpus=a.num_cpus, upscale_delay_s=a.upscale_delay_s,
                                    downscale_delay_s=a.downscale_delay_s, metrics_interval_s=1.0, look_back_period_s=5.0, local_cpus=os.cpu_count())
    builder = ReplicaApp("medical", str(checkpoint.resolve()), settings, None, str(work / "audit.jsonl"), loopback=True)
    started = time.perf_counter()
    ray_engine.deploy(builder, options)
    deploy_s = time.perf_counter() - started
    print(f"deployed in {deploy_s:.1f} s; load for {a.warm_s + a.ramp_s + a.hold_s:.0f} s, then {a.cooldown_s:.0f} s without", flush=True)
    url = f"http://127.0.0.1:{a.port}"
    try:
        assert httpx.get(url + "/v2/health/ready", timeout=30).status_code == 200
        replicas: list[dict[str, Any]] = []
        stop = threading.Event()
        t0 = time.perf_counter()
        poller = threading.Thread(target=poll_replicas, args=(stop, replicas, t0, min(0.5, a.interval_s)), daemon=True)
        poller.start()
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        records = asyncio.run(drive(url, study, {"Authorization": f"Bearer {predict}"}, a, t0))
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        # the cool-down counts from the last answer: a backlog queued under load keeps the replicas busy after the offered load stops
        print(f"load done at {time.perf_counter() - t0:.0f} s; cooling down {a.cooldown_s:.0f} s", flush=True)
        time.sleep(a.cooldown_s)
        stop.set()
        poller.join(10)
        end_s = time.perf_counter() - t0
    finally:
        ray_engine.shutdown()
    rows = timeline(records, replicas, a, end_s)
    generator_cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)  # the poller thread included (small)
    cfg = {k: v for k, v in vars(a).items() if k not in ("checkpoint", "out")}
    cfg.update(metrics_interval_s=options.metrics_interval_s, look_back_period_s=options.look_back_period_s)
    payload = {"benchmark": NAME, "command": f"nice -n {os.nice(0)} python benchmarks/serve_autoscale.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "checkpoint": str(checkpoint), "recipe": recipe, "config": cfg, "machine": machine(), "load_avg_at_end": os.getloadavg(),
               "deploy_s": deploy_s, "wall_s": end_s, "generator_cpu_s": generator_cpu, "summary": summarize(rows, records, a),
               "timeline": rows, "replica_polls": replicas}
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload["plot"] = f"{a.out}.png" if plot(rows, a, RESULTS / f"{a.out}.png") else None
    path = write_results(a.out, payload, markdown(payload))
    s = payload["summary"]
    print(f"peak {s['peak_running']} replicas at {s['peak_at_s']} s, {s['final_running']} at the end (rose {s['rose']}, fell {s['fell']}); {path}")
    return 0 if s["rose"] and s["fell"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
