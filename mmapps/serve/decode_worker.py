"""A decoder child: ``python -m mmapps.serve.decode_worker``, one request at a time on stdin/stdout.

Each request names a temporary data root the server wrote from an upload, the model's run
config and how to read it; the child checks the caps (pixels, frames, points) from headers
before decoding, de-identifies the upload in place when asked (the domain's
``ServeHooks.prepare_upload``), reads the samples with the
domain's own readers (``Domain.build_datasets`` over every split, or a domain reader given as
``"module:function"`` taking ``(cfg, root)``), and answers the samples in the `wire` format.

Limits: after its imports the child caps its address space (``RLIMIT_AS``: what it uses plus
``memory_mb``) and, per request, its CPU time (``RLIMIT_CPU``: used + ``timeout_s``); the server
also kills it after the wall-clock timeout. A crash, a kill or a hang costs that request only:
the pool starts a new child.
"""

from __future__ import annotations

import os
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from mmapps.serve.caps import Refused, check_file
from mmapps.serve.wire import encode_samples, read_frame, write_frame


def _vm_bytes() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def check_caps(root: Path, caps: dict[str, int]) -> None:
    """Refuse files over the pixel / frame / point caps from their headers, before any decode."""
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        check_file(path, caps)


def read_samples(domain: Any, cfg: Any, root: Path, reader: str | None) -> list[Any]:
    from mmapps.domain import resolve

    if reader:
        return list(resolve(reader)(cfg, root))
    splits = resolve(domain.build_datasets)(cfg)
    seen, samples = set(), []
    for dataset in (splits.test, splits.val, splits.train):
        for i in range(len(dataset)):
            sample = dataset[i]
            if sample.sample_id not in seen:
                seen.add(sample.sample_id)
                samples.append(sample)
    return samples


def scrub(message: str, root: Path, identifiers: list[str]) -> str:
    """The message without the temporary root and without any identifier value read from the files."""
    message = message.replace(str(root) + "/", "").replace(str(root), "<upload>")
    for value in sorted({v for v in identifiers if len(v.strip()) >= 2}, key=len, reverse=True):
        message = message.replace(value, "<removed>")
        for part in value.replace("^", " ").split():
            if len(part) >= 3:
                message = message.replace(part, "<removed>")
    return message


def handle(job: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    from mmapps.config import validate_config
    from mmapps.domain import resolve
    from mmapps.errors import MmappsError
    from mmapps.plugins import get_domain

    root = Path(job["root"])
    identifiers: list[str] = []
    try:
        check_caps(root, job.get("caps", {}))
        domain = get_domain(job["domain"])
        if job.get("deid_key"):  # the domain's de-identifier (ServeHooks.prepare_upload) before any reader opens a file
            identifiers = list(resolve(job["prepare_upload"])(root, job["deid_key"]))
        cfg = validate_config(job["config"])
        samples = read_samples(domain, cfg, root, job.get("reader"))
        if not samples:
            raise Refused("no_sample", "the upload holds no usable sample")
        header, payload = encode_samples(samples)
        return {"ok": True, **header}, payload
    except Refused as err:
        return {"ok": False, "kind": err.kind, "message": scrub(str(err), root, identifiers)}, b""
    except (MmappsError, ValueError, FileNotFoundError, KeyError, IndexError) as err:
        kind = job.get("error_kind", "bad_input")
        text = getattr(err, "issue", None) or str(err)  # a data issue without the CLI's --on-error advice
        return {"ok": False, "kind": kind, "message": scrub(text.splitlines()[0] if text else type(err).__name__, root, identifiers)}, b""


def main() -> int:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a library's print must not corrupt the pipe
    header, _ = read_frame(stdin)  # the start message: what to import and the memory cap
    for module in header.get("imports", []):
        __import__(module)
    memory = int(header.get("memory_mb", 0)) * 2**20
    if memory > 0:
        limit = _vm_bytes() + memory
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    cpu_hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    write_frame(stdout, {"ready": True, "pid": os.getpid()})
    while True:
        try:
            job, _ = read_frame(stdin)
        except EOFError:
            return 0
        used = resource.getrusage(resource.RUSAGE_SELF)
        cpu = int(used.ru_utime + used.ru_stime + float(job.get("timeout_s", 30)) + 1)
        # the soft limit only (SIGXCPU ends the child): a lowered hard limit could not be raised for the next job without CAP_SYS_RESOURCE
        resource.setrlimit(resource.RLIMIT_CPU, (min(cpu, cpu_hard) if cpu_hard != resource.RLIM_INFINITY else cpu, cpu_hard))
        start = time.perf_counter()
        try:
            answer, payload = handle(job)
        except MemoryError:
            answer, payload = {"ok": False, "kind": "too_large", "message": f"decoding needed more than the decoder's memory limit of {header.get('memory_mb')} MB"}, b""
        except Exception as err:  # noqa: BLE001 - an unforeseen reader failure: answer its class only
            traceback.print_exc(limit=0, file=sys.stderr) if os.environ.get("MMAPPS_SERVE_DEBUG") else None
            answer, payload = {"ok": False, "kind": "decode_failed", "message": f"the decoder failed on this upload ({type(err).__name__})"}, b""
        answer["seconds"] = round(time.perf_counter() - start, 4)
        write_frame(stdout, answer, payload)


if __name__ == "__main__":
    raise SystemExit(main())
