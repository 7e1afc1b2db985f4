"""Chat and radio-transcript logs: JSONL or CSV messages placed on the clip's time line.

Each message: ``{"t": seconds from the clip start, or an ISO-8601 time, "user": ..., "text": ...}``
(CSV: a header with the columns ``t,user,text``). ISO times need the clip's ``start_time`` from the
manifest. A line that is not valid JSON, lacks a field, or has a time outside the clip is a
per-line issue (file, line, reason) handled by the `IssueLog` policy; the other lines are kept.

Bad lines are counted per file, not one issue per line: a log with some bad lines is one issue
(``chat lines skipped: 3 of 120 lines (line 4: ...)``) and its other lines are used; a log none of
whose lines is usable raises `ChatLogError` (the caller decides: the clip goes on without chat and
the log is counted, or ``watch`` stops). Under ``on_error=stop`` the first bad line stops the run,
named ``file:line``.

Privacy: user names and handles are replaced at read time by keyed 64-bit pseudonyms
(``user-`` + 16 hex digits, `pseudonyms`), so no raw name reaches the dataset, logs, predictions
or reports.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

from mmapps_domains.surveillance.errors import MediaError
from mmapps_domains.surveillance.pseudonyms import pseudonym

from mmapps.data import IssueLog

SKIPPED_LINES = "chat lines skipped"


class ChatLogError(MediaError):
    """A chat log that cannot be used at all: unreadable, a wrong CSV header, or no usable line."""


@dataclass(frozen=True)
class ChatMessage:
    """One message: seconds from the clip start, pseudonymised user, text."""

    t: float
    user: str
    text: str


def parse_time(value: Any, start_time: datetime | None) -> float:
    """Seconds from the clip start for a number or an ISO-8601 string (needs ``start_time``).

    Raises:
        ValueError: unparsable value, or ISO time without a clip start time.
    """
    if isinstance(value, bool):
        raise ValueError(f"field 't': found {value!r}; expected seconds or an ISO-8601 time")
    if isinstance(value, (int, float)):
        return _finite(float(value), value)
    if isinstance(value, str):
        try:
            seconds = float(value)
        except ValueError:
            seconds = None
        if seconds is not None:
            return _finite(seconds, value)
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"field 't': found {value!r}; expected seconds or an ISO-8601 time") from None
        if start_time is None:
            raise ValueError(f"field 't': ISO-8601 time {value!r} needs the clip's start_time (the manifest's start_time field; "
                             "the start_time form field when served)")
        if (moment.tzinfo is None) != (start_time.tzinfo is None):
            moment, start_time = moment.replace(tzinfo=None), start_time.replace(tzinfo=None)
        return (moment - start_time).total_seconds()
    raise ValueError(f"field 't': found {value!r}; expected seconds or an ISO-8601 time")


def _finite(t: float, value: Any) -> float:
    if not math.isfinite(t):
        raise ValueError(f"field 't': found {value!r}; expected a finite number of seconds from the clip start")
    return t


def _bad_lines(bad: Sequence[tuple[int, str]]) -> str:
    return "; ".join(f"line {n}: {reason}" for n, reason in bad[:3]) + (f"; and {len(bad) - 3} more" if len(bad) > 3 else "")


def skipped_lines_reason(n_lines: int, bad: Sequence[tuple[int, str]]) -> str:
    """The per-file issue of a log with bad lines (the first three named); `skipped_line_count` reads it back."""
    return f"{SKIPPED_LINES}: {len(bad)} of {n_lines} lines ({_bad_lines(bad)})"


def skipped_line_count(reason: str) -> int:
    """How many lines a `skipped_lines_reason` issue counts (0 for any other issue)."""
    match = re.match(rf"{SKIPPED_LINES}: (\d+) of", reason)
    return int(match.group(1)) if match else 0


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
    """Read a JSONL or CSV chat log; bad lines are one per-file issue (see the module docstring).

    Args:
        path: ``.jsonl`` / ``.json`` or ``.csv`` file.
        issues: failure policy: ``skip`` counts the file's bad lines in one issue, ``stop`` raises
            at the first bad line (``file:line``).
        start_time: the clip's wall-clock start (datetime or ISO string) for ISO message times.
        duration: clip length in seconds; later messages are bad lines.

    Returns:
        messages sorted by time (an empty log gives none: a quiet channel).

    Raises:
        FileNotFoundError: no such file.
        ChatLogError: wrong suffix, not UTF-8 text, a CSV header without ``t`` and ``text``, or no usable line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"chat log {path}: not found")
    if isinstance(start_time, str):
        start_time = datetime.fromisoformat(start_time)
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".json", ".csv"):
        raise ChatLogError(f"chat log {path}: suffix {suffix!r} not accepted; expected .jsonl (one JSON object per line) or .csv (header t,user,text)")
    messages: list[ChatMessage] = []
    bad: list[tuple[int, str]] = []
    n_lines = 0
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            rows: Any = csv.DictReader(handle) if suffix == ".csv" else handle
            if suffix == ".csv" and not {"t", "text"} <= set(rows.fieldnames or ()):
                raise ChatLogError(f"chat log {path}: CSV header {rows.fieldnames}; expected the columns t,user,text")
            for number, row in enumerate(rows, start=2 if suffix == ".csv" else 1):
                if suffix != ".csv" and not row.strip():
                    continue
                n_lines += 1
                try:
                    messages.append(_message(_json_row(row) if suffix != ".csv" else row, start_time, duration))
                except ValueError as err:
                    if issues.on_error == "stop":
                        issues.report(f"{path}:{number}", f"chat line: {err}")
                    bad.append((number, str(err)))
    except (UnicodeDecodeError, csv.Error) as err:
        raise ChatLogError(f"chat log {path}: not UTF-8 {suffix[1:].upper()} text ({err})") from None
    if bad and not messages:
        raise ChatLogError(f"chat log {path}: none of its {n_lines} lines is usable ({_bad_lines(bad)}); expected JSONL objects or CSV rows with t, user, text")
    if bad:
        issues.report(path, skipped_lines_reason(n_lines, bad))
    return sorted(messages, key=lambda m: m.t)


def _json_row(line: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"not valid JSON ({err.msg} at column {err.colno})") from None


def messages_per_window(messages: Sequence[ChatMessage], n_windows: int, window_s: float) -> list[list[str]]:
    """Texts of the messages falling in each window (``t`` in ``[w * window_s, (w + 1) * window_s)``)."""
    out: list[list[str]] = [[] for _ in range(n_windows)]
    for m in messages:
        w = min(int(m.t // window_s), n_windows - 1)
        out[w].append(m.text)
    return out
