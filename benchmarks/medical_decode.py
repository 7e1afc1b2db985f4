"""DICOM decode + preprocessing throughput: mmapps' reader vs MONAI LoadImage(reader="PydicomReader").

Both pipelines end in a (1, S, S) z-scored float array: ours applies the DICOM grayscale pipeline
(modality LUT, VOI window, MONOCHROME1 inversion) before MONAI's Resize / SpatialPad /
NormalizeIntensity; MONAI's pipeline is LoadImage + EnsureChannelFirst + the same three transforms
(MONAI applies no VOI window and no MONOCHROME1 inversion, so its output is not display-equivalent).

Usage: python benchmarks/medical_decode.py [--n 60] [--size 128] [--real 2]
Prints images/s for each and the ratio (ours / MONAI).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, table, write_results  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60, help="demo studies to write")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--real", type=int, default=2, help="repeats of the real CR files RG1_UNCR / RG1_J2KR (pydicom-data)")
    args = parser.parse_args()

    from monai.transforms import Compose, EnsureChannelFirst, LoadImage, NormalizeIntensity, Resize, SpatialPad
    from pydicom.data import get_testdata_file

    from mmapps_domains.medical.demo import write_demo_data
    from mmapps_domains.medical.options import MedicalDataOptions
    from mmapps_domains.medical.transforms import build_preprocess

    work = Path(tempfile.mkdtemp(prefix="mmapps-med-bench-"))
    try:
        demo = write_demo_data(work / "demo", n=args.n, seed=0)
        files = sorted(demo.glob("images/*/*.dcm"))
        real = [Path(get_testdata_file(name)) for name in ("RG1_UNCR.dcm", "RG1_J2KR.dcm")] * args.real
        ours = build_preprocess(MedicalDataOptions(image_size=args.size))
        s = args.size
        monai = Compose([LoadImage(image_only=True, reader="PydicomReader"), EnsureChannelFirst(),
                         Resize(spatial_size=s, size_mode="longest", mode="area"), SpatialPad((s, s)), NormalizeIntensity()])
        results = {}
        for label, paths in (("demo", files), ("real_cr", real)):
            row = {}
            for name, fn in (("mmapps", lambda p: ours(p)[0]), ("monai", monai)):
                fn(paths[0])  # warm-up (imports, decoder plugins)
                start = time.perf_counter()
                for p in paths:
                    out = fn(p)
                    assert tuple(out.shape) == (1, s, s), out.shape
                row[name] = len(paths) / (time.perf_counter() - start)
            row["ratio_mmapps_over_monai"] = row["mmapps"] / row["monai"]
            row["images"] = len(paths)
            results[label] = row
            print(f"{label:8s} {len(paths):4d} images  mmapps {row['mmapps']:.1f} img/s  MONAI {row['monai']:.1f} img/s  ratio {row['ratio_mmapps_over_monai']:.2f}")
        rows = [[label, r["images"], r["mmapps"], r["monai"], r["ratio_mmapps_over_monai"]] for label, r in results.items()]
        markdown = (
            "# DICOM decode + preprocessing throughput\n\n"
            f"`python benchmarks/medical_decode.py --n {args.n} --size {args.size} --real {args.real}`. Baseline: MONAI "
            "`LoadImage(reader=\"PydicomReader\")` + EnsureChannelFirst + the same Resize / SpatialPad / NormalizeIntensity, "
            "on the same files (MONAI applies no VOI window and no MONOCHROME1 inversion, so it does less work).\n\n"
            + table(["files", "images", "mmapps img/s", "MONAI img/s", "ratio mmapps / MONAI"], rows)
            + f"\n\nMachine: {machine()}\n"
        )
        write_results("medical_decode", {"args": vars(args), "results": results, "machine": machine()}, markdown)
        print(markdown)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
