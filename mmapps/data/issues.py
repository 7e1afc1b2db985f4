"""Per-sample failure policy: skip (and count) or stop, as chosen by ``data.on_error``."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from mmapps.errors import DataError

OnError = Literal["skip", "stop"]


@dataclass(frozen=True)
class SampleIssue:
    """One input that could not be used: which file (and line), and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class IssueLog:
    """Collects per-sample failures; raises `DataError` at once when the policy is ``stop``.

    Usage::

        log = IssueLog(on_error=cfg.data.on_error)
        try:
            image = read_dicom(path)
        except ValueError as err:
            log.report(path, str(err))  # raises under "stop", records under "skip"
            continue
    """

    on_error: OnError = "skip"
    issues: list[SampleIssue] = field(default_factory=list)

    def report(self, path: object, reason: str) -> None:
        issue = SampleIssue(str(path), reason)
        if self.on_error == "stop":
            error = DataError(f"{issue}. The run stops because --on-error is 'stop'; use --on-error skip to skip such samples and count them in the summary.")
            error.issue = str(issue)  # the sample's problem alone (a served upload's answer has no --on-error to suggest)
            raise error
        self.issues.append(issue)

    def extend(self, other: "IssueLog") -> None:
        self.issues.extend(other.issues)

    def summary(self) -> str:
        if not self.issues:
            return "no input was skipped"
        reasons = Counter(issue.reason.split(":")[0] for issue in self.issues)
        top = ", ".join(f"{count} x {reason}" for reason, count in reasons.most_common(5))
        return f"{len(self.issues)} input(s) skipped ({top})"

    def __len__(self) -> int:
        return len(self.issues)
