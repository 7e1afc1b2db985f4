"""Chat and radio-transcript logs: JSONL or CSV messages placed on the clip's time line.

Each message: ``{"t": seconds from the clip start, or an ISO-8601 time, "user": ..., "text": ...}``
(CSV: a header with the columns ``t,user,text``). ISO times need the clip's ``start_time`` from the
manifest. A line that is not valid JSON, lacks a field, or has a time outside the clip is a
per-line issue (file, line, reason) handled by the `IssueLog` policy; the other lines are kept.

Privacy: user names and handles are replaced at read time by stable pseudonyms (``user-1a2b3c4d``,
a keyed BLAKE2 hash), so no raw name reaches the dataset, logs, predictions or reports.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

from mmapps.data import IssueLog

PSEUDONYM_KEY = b"mmapps-surveillance-chat"


@dataclass(frozen=True)
class ChatMessage:
    """One message: seconds from the clip start, pseudonymised user, text."""

    t: float
    user: str
    text: str


def pseudonym(name: str, key: bytes = PSEUDONYM_KEY) -> str:
    """Stable pseudonym of a user name (same name -> same pseudonym, across files and runs)."""
    digest = hashlib.blake2b(name.strip().lower().encode("utf-8"), key=key, digest_size=4).hexdigest()
    return f"user-{digest}"


def parse_time(value: Any, start_time: datetime | None) -> float:
    """Seconds from the clip start for a number or an ISO-8601 string (needs ``start_time``).

    Raises:
        ValueError: unparsable value, or ISO time without a clip start time.
    """
    if isinstance(value, bool):
        raise ValueError(f"field 't': found {value!r}; expected seconds or an ISO-8601 time")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"field 't': found {value!r}; expected seconds or an ISO-8601 time") from None
        if start_time is None:
            raise ValueError(f"field 't': ISO-8601 time {value!r} needs the clip's start_time in the manifest")
        if (moment.tzinfo is None) != (start_time.tzinfo is None):
            moment, start_time = moment.replace(tzinfo=None), start_time.replace(tzinfo=None)
        return (moment - start_time).total_seconds()
    raise ValueError(f"field 't': found {value!r}; expected seconds or an ISO-8601 time")


def _message(record: Any, start_time: datetime | None, duration: float | None) -> ChatMessage:
    if not isinstance(record, dict):
        raise ValueError(f"expected an object with t, user, text; found {type(record).__name__}")
    missing = [k for k in ("t", "text") if k not in record or record[k] is None]
    if missing:
        raise ValueError(f"missing field(s) {missing}; expected t, user, text")
    t = parse_time(record["t"], start_time)
    if t < 0 or (duration is not None and t > duration):
        raise ValueError(f"time outside the clip: t={t:.2f} s, clip is 0-{duration if duration is not None else '?'} s")
    return ChatMessage(t, pseudonym(str(record.get("user") or "anonymous")), str(record["text"]))


def read_chat(
    path: Path, issues: IssueLog, start_time: datetime | str | None = None, duration: float | None = None
) -> list[ChatMessage]:
    """Read a JSONL or CSV chat log; bad lines go to ``issues`` as ``file:line``.

    Args:
        path: ``.jsonl`` / ``.json`` or ``.csv`` file.
        issues: per-line failure policy (skip and count, or stop).
        start_time: the clip's wall-clock start (datetime or ISO string) for ISO message times.
        duration: clip length in seconds; later messages are issues.

    Returns:
        messages sorted by time.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"chat log {path}: not found")
    if isinstance(start_time, str):
        start_time = datetime.fromisoformat(start_time)
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".json", ".csv"):
        raise ValueError(f"chat log {path}: suffix {suffix!r} not accepted; expected .jsonl or .csv")
    messages = []
    with path.open(encoding="utf-8", newline="") as handle:
        rows: Any = csv.DictReader(handle) if suffix == ".csv" else handle
        for number, row in enumerate(rows, start=2 if suffix == ".csv" else 1):
            try:
                if suffix != ".csv":
                    if not row.strip():
                        continue
                    try:
                        row = json.loads(row)
                    except json.JSONDecodeError as err:
                        raise ValueError(f"not valid JSON ({err.msg} at column {err.colno})") from None
                messages.append(_message(row, start_time, duration))
            except ValueError as err:
                issues.report(f"{path}:{number}", f"chat line: {err}")
    return sorted(messages, key=lambda m: m.t)


def messages_per_window(messages: Sequence[ChatMessage], n_windows: int, window_s: float) -> list[list[str]]:
    """Texts of the messages falling in each window (``t`` in ``[w * window_s, (w + 1) * window_s)``)."""
    out: list[list[str]] = [[] for _ in range(n_windows)]
    for m in messages:
        w = min(int(m.t // window_s), n_windows - 1)
        out[w].append(m.text)
    return out
