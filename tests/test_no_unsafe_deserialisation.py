"""The deserialisation lint: nothing in the shipped tree can run code from a file (issue 9, section 3).

Two independent checks over ``mmapps/ domains/ examples/ benchmarks/`` (tests are exempt: they
write malicious pickles on purpose): ruff's bandit rules S301 (pickle and its wrappers) and S506
(unsafe ``yaml.load``), and an AST scan for what ruff does not see or allows: any ``torch.load``
(``weights_only=True`` is a restricted unpickler, but still an unpickler of the file: checkpoints,
training state and weights are safetensors), the other torch loaders built on it (``torch.jit.load``,
``torch.hub.load*``, ``torch.package``, ``model_zoo.load_url``),
``np.load(..., allow_pickle=<anything but False>)`` (keyword or third positional), ``yaml.load``
without a safe loader (and ``unsafe_load``/``full_load``), any ``pickle``/``cPickle``/``_pickle``
load or ``Unpickler``, ``pandas.read_pickle``, and any use of ``marshal``, ``shelve``, ``dill``,
``cloudpickle`` loads or ``joblib.load``. Each rule is itself tested on a file that breaks it.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCANNED = ("mmapps", "domains", "examples", "benchmarks")
_PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle"}
_BANNED_MODULES = {"marshal", "shelve"}
_SAFE_YAML_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader"}
_TORCH_PICKLE_LOADERS = {"torch.jit.load", "torch.hub.load", "torch.hub.load_state_dict_from_url", "torch.utils.model_zoo.load_url"}


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


class _Scanner(ast.NodeVisitor):
    """Collects unsafe deserialisation calls, resolving ``import x as y`` and ``from x import y``."""

    def __init__(self) -> None:
        self.alias: dict[str, str] = {}
        self.problems: list[tuple[int, str]] = []

    def visit_Import(self, node: ast.Import) -> None:
        for name in node.names:
            self.alias[name.asname or name.name.split(".")[0]] = name.name if name.asname else name.name.split(".")[0]
            if name.name.split(".")[0] in _BANNED_MODULES:
                self.problems.append((node.lineno, f"import {name.name} (executes or unpickles file content)"))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        for name in node.names:
            self.alias[name.asname or name.name] = f"{module}.{name.name}"
        if module.split(".")[0] in _BANNED_MODULES:
            self.problems.append((node.lineno, f"from {module} import ... (executes or unpickles file content)"))

    def _resolve(self, func: ast.AST) -> str | None:
        dotted = _dotted(func)
        if dotted is None:
            return None
        head, _, rest = dotted.partition(".")
        full = self.alias.get(head, head)
        return f"{full}.{rest}" if rest else full

    def visit_Call(self, node: ast.Call) -> None:
        name = self._resolve(node.func)
        if name:
            problem = _call_problem(name, node)
            if problem:
                self.problems.append((node.lineno, problem))
        self.generic_visit(node)


def _keyword(node: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in node.keywords if k.arg == name), None)


def _is_constant(node: ast.AST | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def _call_problem(name: str, node: ast.Call) -> str | None:
    module, _, attr = name.rpartition(".")
    root = module.split(".")[0]
    if root in _PICKLE_MODULES and attr in ("load", "loads", "Unpickler"):
        return f"{name}() unpickles (runs code from the data)"
    if root in _BANNED_MODULES:
        return f"{name}() deserialises executable content"
    if name in ("joblib.load", "pandas.read_pickle", "pd.read_pickle", "numpy.lib.format.read_array") or attr == "read_pickle":
        return f"{name}() unpickles"
    if name in ("torch.load", "torch.serialization.load"):
        return f"{name}() unpickles the file (weights_only=True restricts the unpickler, it does not remove it); use safetensors"
    if name in _TORCH_PICKLE_LOADERS or name.startswith("torch.package."):
        return f"{name}() unpickles a downloaded or saved file"
    allow_pickle = _keyword(node, "allow_pickle") or (node.args[2] if len(node.args) > 2 else None)
    if name in ("numpy.load", "np.load") and allow_pickle is not None and not _is_constant(allow_pickle, False):
        return f"{name}(allow_pickle=...) other than False unpickles object arrays"
    if root == "yaml" and attr in ("unsafe_load", "full_load", "unsafe_load_all", "full_load_all"):
        return f"{name}() constructs arbitrary Python objects"
    if root == "yaml" and attr in ("load", "load_all"):
        loader = _keyword(node, "Loader") or (node.args[1] if len(node.args) > 1 else None)
        loader_name = (_dotted(loader) or "").rpartition(".")[2] if loader is not None else ""
        if loader_name not in _SAFE_YAML_LOADERS:
            return f"{name}() without Loader=yaml.SafeLoader"
    return None


def scan_source(text: str) -> list[tuple[int, str]]:
    """Unsafe deserialisation in one Python source: (line, what)."""
    scanner = _Scanner()
    scanner.visit(ast.parse(text))
    return scanner.problems


def _python_files() -> list[Path]:
    files = []
    for top in SCANNED:
        files += [p for p in (REPO / top).rglob("*.py") if "/tests/" not in p.as_posix()[len(str(REPO)):] and "build" not in p.relative_to(REPO).parts]
    return sorted(files)


def test_ast_scan_finds_nothing_in_the_tree() -> None:
    found = []
    for path in _python_files():
        try:
            problems = scan_source(path.read_text())
        except SyntaxError as err:  # a file being edited: ruff below reports real syntax errors
            pytest.fail(f"{path}: cannot be parsed ({err})")
        found += [f"{path.relative_to(REPO)}:{line}: {what}" for line, what in problems]
    assert not found, "unsafe deserialisation:\n" + "\n".join(found)
    assert len(_python_files()) > 50  # the scan really walked the tree


def _ruff() -> list[str]:
    exe = shutil.which("ruff")
    return [exe] if exe else [sys.executable, "-m", "ruff"]


def test_ruff_bandit_rules_find_nothing_in_the_tree() -> None:
    proc = subprocess.run([*_ruff(), "check", "--select", "S301,S506", "--no-cache", "--output-format", "concise", *SCANNED], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


_BAD = """
import pickle as pk
from pickle import loads
import numpy as np, torch, yaml, joblib, marshal
pk.load(open("f", "rb"))
loads(b"")
torch.load("x.pt")
torch.load("x.pt", weights_only=False)
np.load("x.npy", allow_pickle=True)
yaml.load(text)
yaml.load(text, Loader=yaml.Loader)
yaml.unsafe_load(text)
joblib.load("m.joblib")
torch.load("x.pt", map_location="cpu", weights_only=True)
from torch import load as tload
tload("x.pt", weights_only=True)
torch.jit.load("m.pt")
torch.hub.load_state_dict_from_url("https://example.org/w.pth")
np.load("x.npy", None, True)
import torch.serialization
torch.serialization.load("x.pt")
"""

_GOOD = """
import numpy as np, torch, yaml, pickle
from safetensors.torch import load_file
load_file("x.safetensors")
np.load("x.npy", allow_pickle=False)
np.load("x.npy", None, False)
np.load("x.npy")
yaml.safe_load(text)
yaml.load(text, Loader=yaml.SafeLoader)
pickle.dumps({"a": 1})
"""


def test_each_rule_fires_on_a_file_that_breaks_it(tmp_path: Path) -> None:
    lines = sorted(line for line, _ in scan_source(_BAD))
    assert lines == [4, *range(5, 15), 16, 17, 18, 19, 21], scan_source(_BAD)  # marshal import + one per bad call
    assert scan_source(_GOOD) == []
    bad = tmp_path / "bad.py"
    bad.write_text(_BAD.replace("text", "'a: 1'"))
    proc = subprocess.run([*_ruff(), "check", "--select", "S301,S506", "--no-cache", "--output-format", "concise", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 1 and "S301" in proc.stdout and "S506" in proc.stdout, proc.stdout + proc.stderr
