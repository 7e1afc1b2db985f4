"""The decoder pool: raw uploads are read in rlimited child processes, never in the server.

``DecoderPool.decode(job)`` (blocking; call it from a thread) hands a job to an idle child
(`mmapps.serve.decode_worker`), waits at most ``timeout_s`` and returns the samples. A child that
crashes (segfault, ``RLIMIT_AS``, ``SIGXCPU``) or hangs (killed at the timeout) costs only that
request: the caller gets a `ServeError` and the pool starts a replacement child. The children
are started at service start (their imports take seconds) and reused.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from mmapps.serve.errors import ServeError
from mmapps.serve.wire import decode_samples, read_frame, write_frame


SPAWN_ALLOWANCE_S = 60.0  # how long a request waits beyond the decode timeout for a child (a replacement imports torch)


@dataclass
class _Child:
    process: subprocess.Popen
    jobs: int = 0
    started: float = field(default_factory=time.time)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


class DecoderPool:
    """A fixed number of decoder children.

    Args:
        size: children (requests decoded at once).
        imports: modules each child imports before its memory cap is set (the domain's readers).
        memory_mb: address space each child may add after its imports.
        timeout_s: wall-clock limit per job (the CPU limit is the same).
    """

    def __init__(self, size: int, imports: list[str], memory_mb: int, timeout_s: float) -> None:
        self.size, self.imports, self.memory_mb, self.timeout_s = max(1, size), list(imports), memory_mb, timeout_s
        self._idle: queue.Queue[_Child] = queue.Queue()
        self._all: list[_Child] = []
        self._lock = threading.Lock()
        self.crashes = 0
        self.timeouts = 0

    def start(self) -> None:
        """Start every child and wait until each has imported its modules."""
        threads = [threading.Thread(target=lambda: self._idle.put(self._spawn()), daemon=True) for _ in range(self.size)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _spawn(self) -> _Child:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               # the child sees the plugins the server sees (a plugin installed with pip --target and put on sys.path)
               "PYTHONPATH": os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))}
        process = subprocess.Popen([sys.executable, "-m", "mmapps.serve.decode_worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL if not os.environ.get("MMAPPS_SERVE_DEBUG") else None, env=env, close_fds=True)
        child = _Child(process)
        write_frame(process.stdin, {"imports": self.imports, "memory_mb": self.memory_mb})
        header, _ = read_frame(process.stdout)
        if not header.get("ready"):
            raise RuntimeError("decoder child did not start")
        with self._lock:
            self._all.append(child)
        return child

    def decode(self, job: dict[str, Any]) -> list[Any]:
        """The samples of ``job`` (see `mmapps.serve.decode_worker`), or a `ServeError` for this request."""
        try:
            child = self._idle.get(timeout=self.timeout_s + SPAWN_ALLOWANCE_S)  # a replacement child may still be importing
        except queue.Empty:
            raise ServeError(503, "decoders_busy", f"every decoder child stayed busy for {self.timeout_s + SPAWN_ALLOWANCE_S:g} s; retry later "
                             "(the operator can raise --decode-workers)", {"Retry-After": str(max(1, int(self.timeout_s)))}) from None
        if not child.alive:
            child = self._replace(child)
        job = {**job, "timeout_s": self.timeout_s}
        fired = threading.Event()

        def kill() -> None:
            fired.set()
            child.process.kill()

        timer = threading.Timer(self.timeout_s, kill)
        timer.start()
        try:
            write_frame(child.process.stdin, job)
            header, payload = read_frame(child.process.stdout)
        except (EOFError, OSError, ValueError):
            timer.cancel()
            child.process.kill()
            child.process.wait()
            threading.Thread(target=self._replace_in_background, args=(child,), daemon=True).start()  # the replacement imports in the background
            if fired.is_set():
                self.timeouts += 1
                raise ServeError(504, "decode_timeout", f"decoding the upload took longer than {self.timeout_s:g} s (--decode-timeout) and was stopped; "
                                 "the file may be malformed or too large; the server is unaffected") from None
            self.crashes += 1
            code = child.process.returncode
            raise ServeError(422, "decoder_crashed", f"the decoder crashed on this upload (exit {code}); the file is probably malformed "
                             "(accepted formats: see docs/deploy.md, Serving); the server is unaffected") from None
        timer.cancel()
        child.jobs += 1
        self._idle.put(child)
        if not header.get("ok"):
            kind = str(header.get("kind", "bad_input"))
            status = 413 if kind == "too_large" else 422 if kind.startswith("decode") else 400
            raise ServeError(status, kind, str(header.get("message", "the upload could not be read")))
        return decode_samples(header, payload)

    def _replace_in_background(self, dead: _Child) -> None:
        for attempt in range(3):  # a replacement that fails to start (memory, a broken import) is retried, then given up loudly
            try:
                self._idle.put(self._replace(dead))
                return
            except (OSError, EOFError, RuntimeError, ValueError):
                time.sleep(1 + attempt)
        print("mmapps serve: a decoder child could not be restarted; the pool runs with one child less", file=sys.stderr)

    def _replace(self, dead: _Child) -> _Child:
        with self._lock:
            if dead in self._all:
                self._all.remove(dead)
        return self._spawn()

    def close(self) -> None:
        with self._lock:
            children, self._all = list(self._all), []
        for child in children:
            try:
                child.process.stdin.close()
            except OSError:
                pass
            try:
                child.process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                child.process.kill()

    @property
    def pids(self) -> list[int]:
        with self._lock:
            return [c.process.pid for c in self._all if c.alive]
