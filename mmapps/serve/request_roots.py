"""An upload written as a data root that the domain's own readers read, in a private temporary folder.

The server never parses an uploaded file itself: it writes the bytes under names it chooses
(never the client's file names, which may carry identifiers) in the layout the domain documents,
and a decoder child reads them (`mmapps.serve.decode_worker`). Per domain:

- medical: ``images/image-<i>.dcm`` + ``manifest.csv`` (one study, ``split=test``, blank label
  columns, the note inline with its ``note_kind``), read by ``Domain.build_datasets``;
- driving: KITTI ``testing/{velodyne,image_2,calib}/000000.*``, read by the domain's frame index;
- surveillance: ``clips/clip.mp4`` (+ ``mic/clip.wav``, ``chat/clip.jsonl``) and ``manifest.jsonl``;
- any other domain (third-party plugins): the uploaded files at the relative paths the client
  gives (a data root as the plugin documents it), read by ``Domain.build_datasets``, every split.
"""

from __future__ import annotations

import csv
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from mmapps.serve.errors import ServeError


@dataclass
class RequestRoot:
    """A written upload: the folder, how to read it, and config overrides for the reader.

    Attributes:
        root: the private temporary data root (0700; removed after the request).
        reader: ``"module:function"`` taking ``(cfg, root) -> list[Sample]``, or None for ``build_datasets``.
        deidentify: DICOM files are de-identified in place before anything reads them.
        options: values merged into ``cfg.data.options`` (e.g. the LiDAR layout).
    """

    root: Path
    reader: str | None = None
    deidentify: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def new_root(base: Path | None = None) -> Path:
    return Path(tempfile.mkdtemp(prefix="mmapps-serve-", dir=base))  # mkdtemp creates it 0700


def medical_root(dicoms: list[bytes], note: str | None, note_kind: str | None, findings: list[str], base: Path | None = None) -> RequestRoot:
    """One study: the DICOM files in upload order, the note inline (or none)."""
    root = new_root(base)
    (root / "images").mkdir()
    paths = []
    for i, data in enumerate(dicoms):
        path = root / "images" / f"image-{i}.dcm"
        path.write_bytes(data)
        paths.append(f"images/image-{i}.dcm")
    columns = ["study_id", "subject_id", "dicom_paths", "note_text", "note_kind", "split", *findings]
    with open(root / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerow({"study_id": "request", "subject_id": "request", "dicom_paths": ";".join(paths), "note_text": note or "", "note_kind": note_kind or "", "split": "test"})
    return RequestRoot(root, deidentify=True)


def safe_relative(name: str) -> PurePosixPath:
    """A client-given relative path, refused when absolute, escaping the root or odd."""
    path = PurePosixPath(name.replace("\\", "/"))
    if not name or path.is_absolute() or any(part in ("..", "") for part in path.parts) or len(path.parts) > 8 or len(name) > 255:
        raise ServeError(400, "bad_path", f"file name of {len(name)} characters: expected a relative path inside the data root "
                         "(no leading '/', no '..'), e.g. 'image/sample-0.png' or 'samples.csv'")
    return path


def files_root(files: list[tuple[str, bytes]], base: Path | None = None) -> RequestRoot:
    """A data root from (relative path, bytes) pairs, for domains read by ``build_datasets``."""
    root = new_root(base)
    for name, data in files:
        path = root / safe_relative(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return RequestRoot(root, deidentify=any(n.lower().endswith((".dcm", ".dicom")) for n, _ in files))
