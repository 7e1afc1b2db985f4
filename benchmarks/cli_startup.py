"""Start-up time of `mmapps --help` and `mmapps domains` (goal: under 2 s), and the heavy imports they avoid.

Baseline for the ratio: `python -c "import torch"`, the cost every command would pay if the CLI
imported torch at start-up.

    python benchmarks/cli_startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, table, write_results  # noqa: E402


def timed(cmd: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch_import = timed([sys.executable, "-c", "import torch"], args.repeats)
    rows = []
    for label, cmd in (("mmapps --help", ["--help"]), ("mmapps domains", ["domains"])):
        seconds = timed([sys.executable, "-m", "mmapps", *cmd], args.repeats)
        rows.append([label, seconds, seconds / torch_import, "yes" if seconds < 2.0 else "NO"])
    markdown = (
        f"# CLI start-up\n\nMedian of {args.repeats} runs each. Baseline: `python -c 'import torch'` = {torch_import:.3f} s.\n\n"
        + table(["command", "seconds", "ratio vs import torch", "under 2 s"], rows)
        + f"\n\nMachine: {machine()}\n"
    )
    path = write_results("cli_startup", {"machine": machine(), "import_torch_s": torch_import, "rows": rows}, markdown)
    print(path.read_text())


if __name__ == "__main__":
    main()
