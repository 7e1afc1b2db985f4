"""An upload written as a data root that the domain's own readers read, in a private temporary folder.

The server never parses an uploaded file itself: it writes the bytes under names it chooses
(never the client's file names, which may carry identifiers) in the layout the domain documents,
and a decoder child reads them (`mmapps.serve.decode_worker`). A domain's own endpoints
(``Domain.serve``, e.g. ``domains/medical/serve.py``) write their layout with `new_root` and return
a `RequestRoot`; `files_root` serves every domain (third-party plugins included): the uploaded
files at the relative paths the client gives (a data root as the plugin documents it), read by
``Domain.build_datasets``, every split.
"""

from __future__ import annotations

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
