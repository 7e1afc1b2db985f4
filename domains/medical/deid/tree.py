"""De-identify a file or a folder tree: outputs named by the new UIDs, every input accounted for."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pydicom

from mmapps.data.issues import IssueLog, OnError
from mmapps.errors import ConfigError

from .keys import DeidKey
from .options import DeidOptions
from .pixels import burned_in_status, decodes
from .profile import deidentify_dataset
from .reading import read_input
from .safe_private import SafePrivateKey

Status = Literal["written", "refused", "skipped"]


@dataclass(frozen=True)
class FileOutcome:
    """One input: its path relative to the source, what happened, why, and the output (relative to ``out``)."""

    source: str
    status: Status
    reason: str = ""
    output: str = ""


@dataclass
class DeidSummary:
    """Every input of a run, and the action counts over the files written."""

    options: DeidOptions
    key_fingerprint: str
    outcomes: list[FileOutcome] = field(default_factory=list)
    actions: Counter = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)

    def count(self, status: Status) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def files(self) -> int:
        return self.count("written")

    def lines(self) -> list[str]:
        """The printed summary: totals, the method, the action counts, then every input by number.

        Inputs are numbered in sorted path order and never named here: folder and file names often hold
        patient names. `write_report` writes the numbered paths for the identified side.
        """
        totals = f"{self.files} written, {self.count('refused')} refused, {self.count('skipped')} skipped"
        out = [f"{len(self.outcomes)} input(s): {totals} (DICOM PS3.15 Annex E; key fingerprint {self.key_fingerprint})"]
        out.append("  method: " + "; ".join(self.options.method_text()))
        out += [f"  warning: {w}" for w in self.warnings]
        out += [f"  {action}: {count}" for action, count in sorted(self.actions.items())]
        if self.outcomes:
            out.append("  inputs, numbered in sorted path order (--report writes their paths, for the identified side):")
        for number, o in enumerate(self.outcomes, 1):
            detail = f" -> {o.output}" if o.output else ""
            out.append(f"  #{number} {o.status}{detail}{': ' + o.reason if o.reason else ''}")
        return out

    def to_json(self) -> dict:
        return {"inputs": len(self.outcomes), "written": self.files, "refused": self.count("refused"), "skipped": self.count("skipped"),
                "method": self.options.method_text(), "key_fingerprint": self.key_fingerprint, "actions": dict(self.actions),
                "warnings": self.warnings, "files": [{"number": n, **o.__dict__} for n, o in enumerate(self.outcomes, 1)]}


def _inputs(source: Path, out: Path) -> list[Path]:
    if source.is_file():
        return [source]
    out_resolved = out.resolve()
    files = []
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        if out_resolved in path.resolve().parents:
            continue  # the output folder inside the source folder is not input
        files.append(path)
    return files


def _output_path(ds: pydicom.Dataset) -> Path:
    study = str(ds.get("StudyInstanceUID", "") or "") or "unknown-study"
    series = str(ds.get("SeriesInstanceUID", "") or "") or "unknown-series"
    return Path(study) / series / f"{ds.SOPInstanceUID}.dcm"


def _verify(path: Path, identity_removed: bool) -> str | None:
    """None when the written file re-reads as Part 10 DICOM, decodes, and states what was done."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            again = pydicom.dcmread(path)
    except Exception as err:  # noqa: BLE001 (any failure to re-read means the output is not usable)
        return f"output does not re-read ({type(err).__name__})"
    if again.preamble != b"\x00" * 128:
        return "output preamble is not zeroed"
    if str(again.get("PatientIdentityRemoved", "")) != ("YES" if identity_removed else "NO"):
        return "output does not carry PatientIdentityRemoved"
    return decodes(again)


def deidentify_tree(
    source: Path,
    out: Path,
    key: DeidKey,
    options: DeidOptions | None = None,
    *,
    on_error: OnError = "skip",
    safe_private: frozenset[SafePrivateKey] | None = None,
) -> DeidSummary:
    """De-identify one DICOM file, or every file under a folder, into ``out/<Study>/<Series>/<SOP>.dcm`` (new UIDs).

    Args:
        source: a file or folder; files that are not DICOM are skipped and listed.
        out: output folder (created); never inside a path named after an input.
        key: the user's key (`load_key`).
        options: PS3.15 E.3 options.
        on_error: ``skip`` refused files (listed with the reason) or ``stop`` at the first one.
        safe_private: safe private list (Retain Safe Private); default the shipped one.

    Returns:
        `DeidSummary` listing every input as written, refused or skipped.

    Raises:
        FileNotFoundError: ``source`` does not exist.
        ConfigError: ``out`` is ``source`` or a file.
        DataError: a file is refused and ``on_error`` is ``stop``.
    """
    options = options or DeidOptions()
    source, out = Path(source), Path(out)
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such file or folder to de-identify")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: the output must be a folder, a file is there")
    if source.is_dir() and out.resolve() == source.resolve():
        raise ConfigError(f"{out}: the output folder is the input folder; choose another one")
    out.mkdir(parents=True, exist_ok=True)
    summary, issues = DeidSummary(options, key.fingerprint), IssueLog(on_error=on_error)
    written_by: dict[Path, int] = {}
    base = source if source.is_dir() else source.parent
    pydicom_log = logging.getLogger("pydicom")
    level, pydicom_log.disabled = pydicom_log.disabled, True
    try:
        # pydicom's warnings quote values (an invalid UID, a name): none may reach a log
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for number, path in enumerate(_inputs(source, out), 1):
                rel = path.relative_to(base).as_posix()
                outcome = _one(path, rel, number, out, key, options, safe_private, written_by, summary.actions)
                if outcome.status == "refused":
                    issues.report(f"input #{number}", outcome.reason)  # raises under "stop"; paths may hold names
                summary.outcomes.append(outcome)
    finally:
        pydicom_log.disabled = level
    return summary


def _one(path: Path, rel: str, number: int, out: Path, key: DeidKey, options: DeidOptions,
         safe_private: frozenset[SafePrivateKey] | None, written_by: dict[Path, int], actions: Counter) -> FileOutcome:
    read = read_input(path)
    if read.dataset is None:
        return FileOutcome(rel, "skipped" if read.skipped else "refused", read.skipped or read.refused or "")
    ds = read.dataset
    burned = burned_in_status(ds)
    if burned != "NO" and options.burned_in == "refuse":
        return FileOutcome(rel, "refused", f"BurnedInAnnotation is {burned}: the pixels may show identifiers; check them and set it to NO, "
                                           "or write such files with --burned-in write-unverified (PatientIdentityRemoved NO)")
    reason = decodes(ds)
    if reason:
        return FileOutcome(rel, "refused", f"input {reason}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    try:
        result = deidentify_dataset(ds, key, options, pixels_verified=burned == "NO", safe_private=safe_private, fallback_label=digest)
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as err:
        return FileOutcome(rel, "refused", f"a value could not be de-identified ({type(err).__name__})")
    target = out / _output_path(ds)
    if target in written_by:
        return FileOutcome(rel, "refused", f"same SOP Instance as input #{written_by[target]} (duplicate instance): not written twice")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    try:
        ds.save_as(partial, enforce_file_format=True)
    except (ValueError, TypeError, OverflowError, OSError) as err:
        partial.unlink(missing_ok=True)
        detail = err.strerror if isinstance(err, OSError) and err.strerror else type(err).__name__
        return FileOutcome(rel, "refused", f"output could not be written ({detail})")
    problem = _verify(partial, result.identity_removed)
    if problem:
        partial.unlink(missing_ok=True)
        return FileOutcome(rel, "refused", problem)
    os.replace(partial, target)
    written_by[target] = number
    actions.update(result.counts)
    note = "" if result.identity_removed else f"written with PatientIdentityRemoved NO: BurnedInAnnotation {burned}, pixels not cleaned"
    return FileOutcome(rel, "written", note, target.relative_to(out).as_posix())


def write_report(summary: DeidSummary, path: Path) -> None:
    """The summary as JSON (for the identified side: it names the input files)."""
    Path(path).write_text(json.dumps(summary.to_json(), indent=1), encoding="utf-8")

