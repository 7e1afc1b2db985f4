"""Supply chain of a served model: a CycloneDX SBOM of the service's Python environment and a pip-audit report.

    python -m mmapps.serve.supply_chain --out DIR [--domain medical --model RUN/checkpoints/best.safetensors] [--no-audit]

writes into ``DIR``:

- ``sbom.cdx.json``: CycloneDX 1.6 JSON of every distribution installed in the interpreter that
  runs the service (``cyclonedx-py environment``, package cyclonedx-bom), offline;
- ``pip-audit.json``: known vulnerabilities of those distributions (``pip-audit``, which asks the
  PyPI advisory service: it needs network access to PyPI; ``--no-audit`` skips it);
- ``model_card.json`` (with ``--model``): the card the service serves for that model
  (`mmapps.serve.modelcard`), so the SBOM lies next to the model card it belongs to.

Both tools are run as subprocesses of the same interpreter (``python -m cyclonedx_py``,
``python -m pip_audit``); a missing tool is a one-paragraph error naming the package to install.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from mmapps.errors import ConfigError

SBOM_NAME, AUDIT_NAME, CARD_NAME = "sbom.cdx.json", "pip-audit.json", "model_card.json"
TOOLS = {"cyclonedx_py": "cyclonedx-bom==7.5.0", "pip_audit": "pip-audit==2.10.1"}


@dataclass
class SupplyChainReport:
    """What was written: the SBOM (and its component count), the audit (and its findings), the model card."""

    sbom: Path
    components: int
    audit: Path | None = None
    vulnerabilities: int | None = None
    audit_error: str | None = None
    card: Path | None = None


def _require(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"the supply-chain report needs the Python package {TOOLS[module]} (module {module}) in the service's environment; "
                          f"install it with pip install '{TOOLS[module]}' (or the project's supply-chain extra) and run the command again")


def write_sbom(out: Path, python: str = sys.executable, timeout_s: float = 1200) -> tuple[Path, int]:
    """``out/sbom.cdx.json`` for the environment of ``python``; returns the path and its number of components."""
    _require("cyclonedx_py")
    target = Path(out) / SBOM_NAME
    cmd = [sys.executable, "-m", "cyclonedx_py", "environment", "--output-format", "JSON", "--output-reproducible", "--output-file", str(target), python]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)  # a fixed argv, no shell
    except subprocess.TimeoutExpired:
        raise ConfigError(f"cyclonedx-py did not finish the SBOM within {timeout_s:g} s (it reads every installed distribution); "
                          "run it again on a less loaded machine") from None
    if done.returncode != 0 or not target.is_file():
        raise ConfigError(f"cyclonedx-py failed (exit {done.returncode}) writing {target}: {done.stderr.strip().splitlines()[-1:] or ['no message']}")
    return target, len(json.loads(target.read_text()).get("components") or [])


def write_audit(out: Path, timeout_s: float = 600) -> tuple[Path | None, int | None, str | None]:
    """``out/pip-audit.json`` of the running environment: (path, vulnerabilities found, error paragraph when the audit could not run)."""
    _require("pip_audit")
    target = Path(out) / AUDIT_NAME
    cmd = [sys.executable, "-m", "pip_audit", "--format", "json", "--output", str(target), "--progress-spinner", "off", "--skip-editable"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)  # a fixed argv, no shell
    except subprocess.TimeoutExpired:
        return None, None, f"pip-audit did not finish within {timeout_s:g} s (it queries the PyPI advisory service; is PyPI reachable?)"
    if not target.is_file():  # exit 1 with a report means "vulnerabilities found"; without one it failed
        tail = done.stderr.strip().splitlines()[-1:] or ["no message"]
        return None, None, f"pip-audit failed (exit {done.returncode}): {tail[0]} (it needs network access to PyPI's advisory service)"
    report = json.loads(target.read_text())
    found = sum(len(d.get("vulns") or []) for d in report.get("dependencies") or [])
    return target, found, None


def write_card(out: Path, domain_name: str, model: Path) -> Path:
    """``out/model_card.json``: the card the service serves for ``model`` (its hashes checked as at serve time)."""
    from mmapps.plugins import get_domain
    from mmapps.serve.modelcard import model_card
    from mmapps.serve.runner import load_runner

    target = Path(out) / CARD_NAME
    target.write_text(json.dumps(model_card(load_runner(Path(model), get_domain(domain_name))), indent=2))
    return target


def supply_chain(out: Path, domain: str | None = None, model: Path | None = None, audit: bool = True) -> SupplyChainReport:
    """Write the SBOM, the audit (unless ``audit`` is False) and the model card (with ``model``) into ``out``."""
    if (domain is None) != (model is None):
        raise ConfigError("--domain and --model go together: the model card needs the domain that reads the model")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sbom, components = write_sbom(out)
    report = SupplyChainReport(sbom, components)
    if audit:
        report.audit, report.vulnerabilities, report.audit_error = write_audit(out)
    if model is not None:
        report.card = write_card(out, domain, model)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmapps.serve.supply_chain", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for sbom.cdx.json, pip-audit.json and model_card.json")
    parser.add_argument("--domain", help="the served model's domain (with --model)")
    parser.add_argument("--model", type=Path, help="the served checkpoint or export folder: its model card is written beside the SBOM")
    parser.add_argument("--no-audit", action="store_true", help="skip pip-audit (offline machines)")
    args = parser.parse_args(argv)
    try:
        report = supply_chain(args.out, args.domain, args.model, not args.no_audit)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"SBOM: {report.sbom} ({report.components} components)")
    if report.audit_error:
        print(f"pip-audit: not written: {report.audit_error}", file=sys.stderr)
    elif report.audit is not None:
        print(f"pip-audit: {report.audit} ({report.vulnerabilities} known vulnerabilities)")
    if report.card is not None:
        print(f"model card: {report.card}")
    return 1 if report.vulnerabilities else 0


if __name__ == "__main__":
    sys.exit(main())
