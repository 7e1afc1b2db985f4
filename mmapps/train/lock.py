"""One live run per run folder: an exclusive lock on ``<run>/.mmapps.lock`` naming its holder.

The lock is a POSIX record lock (``fcntl.lockf``), held by the training process alone: unlike
``flock``, it is not inherited by forked DataLoader workers, so a run killed with SIGKILL frees
its folder at once even while its workers are still winding down, and the kernel releases it
whatever way the holder dies (a stale lock file of a dead process is simply taken over). The
file holds the holder's pid, host, start time and command line, for the refusal message.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import socket
import sys
from pathlib import Path
from types import TracebackType

from mmapps.errors import RunLockedError, WriteError

LOCK_NAME = ".mmapps.lock"


class RunLock:
    """Context manager holding the run folder's lock.

    Args:
        run_dir: the run folder (created if needed).

    Raises:
        RunLockedError: another live process holds the lock (the message names it).
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None
        self.replaced: dict | None = None  # the holder record of a dead run whose lock was taken over

    def acquire(self) -> "RunLock":
        import fcntl

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise WriteError.from_os_error(self.path, err, "The run folder needs a lock file.") from None
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = False
        except OSError as err:
            # EACCES/EAGAIN: another process holds it; anything else: a file system without record
            # locks (some network mounts), where a live pid on this host is the best evidence left
            held = err.errno in (errno.EACCES, errno.EAGAIN) or _alive_here(_read_holder(fd))
        if held:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunLockedError(
                f"run folder {self.path.parent} is in use by another run ({_describe(holder)}, lock file {self.path}); "
                "wait for it to finish, stop it, or give another --out"
            ) from None
        previous = _read_holder(fd)
        self.replaced = previous or None
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"), "command": " ".join(sys.argv)[:500]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        import fcntl

        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
            fcntl.lockf(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def _read_holder(fd: int) -> dict:
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        value = json.loads(text) if text else {}
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _alive_here(holder: dict) -> bool:
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int) or holder["pid"] == os.getpid():
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _describe(holder: dict) -> str:
    if not holder:
        return "holder unknown"
    return f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}: {holder.get('command', '')}"
