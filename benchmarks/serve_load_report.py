"""The Markdown of a serve load-test result (``benchmarks/serve_load.py``): tables and the goals, from its JSON alone."""

from __future__ import annotations

from typing import Any

from common import table


def goals(results: dict[str, Any]) -> dict[str, Any]:
    by = {(r["batch"], r["concurrency"]): r for r in results["rows"]}
    best_http = max((r["http"]["throughput"] for r in results["rows"]), default=0.0)
    best_local = max((r["in_process"]["throughput"] for r in results["rows"]), default=0.0)
    out: dict[str, Any] = {"throughput_vs_in_process": round(best_http / best_local, 2) if best_local else None}
    for batch in (1, 8):
        if (batch, 1) in by:
            r = by[(batch, 1)]
            out[f"http_overhead_p50_ms_batch{batch}"] = round(r["http"]["p50_ms"] - r["in_process"]["p50_ms"], 1)
    for r in (results.get("overhead") or results).get("rows", []):  # paired per request (Server-Timing), the --only overhead run when there is one
        if r["concurrency"] == 1 and "overhead_p50_ms" in r["http"]:
            out[f"paired_overhead_p50_ms_batch{r['batch']}"] = r["http"]["overhead_p50_ms"]
    top = max(c for _, c in by) if by else None
    if (8, top) in by and (1, top) in by and by[(1, top)]["http"]["throughput"]:
        out[f"batching_speedup_c{top}_http"] = round(by[(8, top)]["http"]["throughput"] / by[(1, top)]["http"]["throughput"], 2)
        out[f"batching_speedup_c{top}_in_process"] = round(by[(8, top)]["in_process"]["throughput"] / max(by[(1, top)]["in_process"]["throughput"], 1e-9), 2)
    return out


def markdown(results: dict[str, Any]) -> str:
    g = results["goals"] = goals(results)
    load0, load1 = results.get("load_at_start"), results.get("load_at_end")
    parts = [(f"# serve_load ({results['domain']})\n\n`{results['command']}`\n\n"
             f"Checkpoint `{results['checkpoint']}`. Loopback, one uvicorn process per arm, on a 2-core machine **shared with other "
             f"engineers' jobs** (load average at start {load0}, at the end {load1}): absolute figures are not the hardware's capacity; "
             "HTTP and in-process windows are alternated in one run, so their ratios are comparable.\n"),
             (f"Each cell: {results['repeats']} alternated windows of {results['window_s']:g} s per arm (after the pipeline filled); "
             "req/s = median over windows (p95 beside it); latency percentiles over every counted answer.\n")]
    rows = [[r["batch"], r["concurrency"], r["http"]["throughput"], r["http"]["throughput_p95"], r["in_process"]["throughput"],
             r["http"]["p50_ms"], r["in_process"]["p50_ms"], r["http"]["p95_ms"], r["http"]["p99_ms"], r["in_process"]["p95_ms"],
             r["http"]["statuses"], r["generator_cpu_s"], f"{100 * r['generator_cpu_share']:.0f} %", r["server_cpu_s"]] for r in results["rows"]]
    parts.append(table(["batch", "conc.", "HTTP req/s", "HTTP req/s p95", "in-proc req/s", "HTTP p50 ms", "in-proc p50 ms", "HTTP p95 ms",
                        "HTTP p99 ms", "in-proc p95 ms", "HTTP statuses", "generator CPU s", "generator CPU / wall", "server CPU s"], rows))
    overhead = ", ".join(f"{v} ms ({k.rsplit('_', 1)[-1]})" for k, v in g.items() if k.startswith("http_overhead"))
    paired = ", ".join(f"{v} ms ({k.rsplit('_', 1)[-1]})" for k, v in g.items() if k.startswith("paired_overhead"))
    speed = ", ".join(f"{v}x ({k.split('_', 2)[-1]})" for k, v in g.items() if k.startswith("batching_speedup"))
    parts.append(f"\n**Goals.** Throughput HTTP / in-process (best of each): {g['throughput_vs_in_process']} (goal >= 0.7). "
                 f"HTTP overhead p50 at concurrency 1 (HTTP p50 - in-process p50): {overhead}"
                 + (f"; paired per request (each answer's latency - its Server-Timing pipeline): {paired}" if paired else "") + " (goal <= 10 ms). "
                 f"Batching (batch 8 / batch 1 throughput): {speed} (medical goal >= 1.5 at concurrency 32).\n")
    over = results.get("overhead")
    if isinstance(over, dict) and over.get("rows"):
        parts.append(f"\n**HTTP overhead, paired per request** (`{over['command']}`, checkpoint `{over['checkpoint']}` (recipe {over.get('recipe')}: the overhead is outside the model), load {over['load_at_start']} -> "
                     f"{over['load_at_end']}; concurrency 1, {over['repeats']} alternated windows of {over['window_s']:g} s): each answer's client latency "
                     "minus the server's decode -> model time for that same request (`Server-Timing: pipeline`), so the model's jitter cancels.\n")
        parts.append(table(["batch", "HTTP p50 ms", "in-proc p50 ms", "overhead p50 ms", "overhead p95 ms", "answers"],
                           [[r["batch"], r["http"]["p50_ms"], r["in_process"]["p50_ms"], r["http"].get("overhead_p50_ms"), r["http"].get("overhead_p95_ms"),
                             r["http"]["answers"]] for r in over["rows"]]))
    prof = results.get("profile")
    if isinstance(prof, dict) and "error" not in prof:
        parts.append(f"\n**Profile** (batch 8, concurrency {prof['concurrency']}, in process): request p50 {prof['request_p50_ms']} ms, of which decode "
                     f"child p50 {prof['decode_p50_ms']} ms and batcher (queue + model + postprocess) p50 {prof['batcher_p50_ms']} ms; mean model batch "
                     f"{prof['in_process_mean_batch']} in process, {prof['server_mean_batch']} in the server over the whole run.\n")
    above = results.get("above_capacity") or {}
    if "statuses" in above:
        parts.append(f"\n**Above capacity** (open loop at {above['rate']} req/s for {above['seconds']:g} s = {above['requests']} requests, "
                     f"no client-side cap): statuses {above['statuses']}, Retry-After {above['retry_after_min_max']} s, other 5xx: {above['other_5xx']}.\n")
    if isinstance(results.get("auth"), dict) and "error" not in results["auth"]:
        parts += ["\n**Auth** (10 requests each):\n", table(["case", "statuses"], [[k, v] for k, v in results["auth"].items()])]
    if isinstance(results.get("bad_input"), list):
        parts += ["\n**Bad input** (each followed by one good request):\n", table(["input", "status", "class", "next good request"], results["bad_input"])]
    s = results.get("sustained")
    if isinstance(s, dict) and "statuses" in s:
        parts.append(f"\n**Sustained** {s['seconds']:g} s at {s['rate']} req/s: statuses {s['statuses']}; server RSS max first half "
                     f"{s['rss_first_half_max_mb']} MB, second half {s['rss_second_half_max_mb']} MB (sampled every 5 s); generator CPU {s['generator_cpu_s']} s.\n")
    else:
        parts.append("\n**Sustained**: not run here (`--sustained-s 600`; see the command in the closing note).\n")
    return "\n".join(parts) + "\n"
