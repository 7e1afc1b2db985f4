"""The self-test's error: one paragraph naming the domain, the contract, the field, what was found and what is expected."""

from __future__ import annotations

import os
import sysconfig
import traceback

from mmapps.errors import MmappsError

_CORE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SKIP = (sysconfig.get_paths()["stdlib"], os.sep + "torch" + os.sep, os.sep + "numpy" + os.sep, os.sep + "typer" + os.sep, os.sep + "pydantic" + os.sep)


class ContractError(MmappsError):
    """A plugin broke a contract of the Domain API (exit code 5, like a plugin that fails to import).

    Attributes:
        step: the self-test step (``datasets``, ``encoders``, ``write_predictions``...).
    """

    exit_code = 5

    def __init__(self, domain: str, step: str, problem: str) -> None:
        self.domain, self.step, self.problem = domain, step, problem
        super().__init__(f"plugin self-test of domain {domain!r}, step {step}: {problem}")


def raised(err: BaseException) -> str:
    """``"raised KeyError: 'x' (at pkg/mod.py:12 in fn)"``: the error and the deepest frame of plugin code."""
    frames = traceback.extract_tb(err.__traceback__)
    ours = [f for f in frames if not f.filename.startswith(_CORE) and not any(part in f.filename for part in _SKIP)]
    frame = (ours or frames or [None])[-1]
    where = f" (at {_short(frame.filename)}:{frame.lineno} in {frame.name})" if frame is not None else ""
    return f"raised {type(err).__name__}: {err}{where}"


def _short(path: str) -> str:
    parts = path.split(os.sep)
    for anchor in ("site-packages", "src"):
        if anchor in parts:
            return os.sep.join(parts[parts.index(anchor) + 1 :])
    return os.sep.join(parts[-3:])
