"""DICOM decode + preprocessing, cold: mmapps' reader vs MONAI LoadImage(reader="PydicomReader") + the same transforms.

Both pipelines end in a (1, S, S) z-scored float array. mmapps applies the DICOM grayscale
pipeline (modality LUT, VOI window, MONOCHROME1 inversion) as one lookup table (applied after the
area resize when it is a clipped line), views native pixel data in place, decodes JPEG-LS with
CharLS and JPEG 2000 at a reduced resolution level, then pads and z-scores; MONAI's pipeline is
LoadImage + EnsureChannelFirst + Resize(area, longest) / SpatialPad / NormalizeIntensity (it
applies no VOI window and no MONOCHROME1 inversion, so it does less work).

File sets: the demo phantoms, the real CR radiographs of pydicom-data (RG1 chest PA 1955x1841,
RG3 extremity 1760x1760) uncompressed and JPEG 2000 lossless, and JPEG-LS lossless transcodes of
the uncompressed ones written here with pyjpegls. Alternated ABAB in one process, --rounds rounds;
per round each pipeline reads every file of the set once (no cache). Reported: median and min of
wall and CPU time per image, and the ratio MONAI / mmapps of the medians (> 1: mmapps faster).

Usage: python benchmarks/medical_decode.py [--n 24] [--size 128] [--rounds 7]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, table, write_results  # noqa: E402


def _jpegls_transcode(src: Path, out: Path) -> Path:
    import pydicom
    from pydicom.uid import JPEGLSLossless

    ds = pydicom.dcmread(src)
    ds.compress(JPEGLSLossless, encoding_plugin="pyjpegls")
    ds.save_as(out, enforce_file_format=True)
    return out


def _time(fn, paths, size) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for p in paths:
        out = fn(p)
        assert tuple(out.shape) == (1, size, size), out.shape
    return (time.perf_counter() - wall) / len(paths), (time.process_time() - cpu) / len(paths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=24, help="demo studies to write")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    from monai.transforms import Compose, EnsureChannelFirst, LoadImage, NormalizeIntensity, Resize, SpatialPad
    from pydicom.data import get_testdata_file

    from mmapps_domains.medical.demo import write_demo_data
    from mmapps_domains.medical.options import MedicalDataOptions
    from mmapps_domains.medical.preprocess import build_preprocess

    work = Path(tempfile.mkdtemp(prefix="mmapps-med-bench-"))
    try:
        demo = write_demo_data(work / "demo", n=args.n, seed=0)
        real = {name: Path(get_testdata_file(name)) for name in ("RG1_UNCR.dcm", "RG3_UNCR.dcm", "RG1_J2KR.dcm", "RG3_J2KR.dcm")}
        sets = {
            "demo": sorted(demo.glob("images/*/*.dcm")),
            "real CR uncompressed": [real["RG1_UNCR.dcm"], real["RG3_UNCR.dcm"]],
            "real CR JPEG 2000": [real["RG1_J2KR.dcm"], real["RG3_J2KR.dcm"]],
            "real CR JPEG-LS": [_jpegls_transcode(real[n], work / f"{n[:3]}_JLS.dcm") for n in ("RG1_UNCR.dcm", "RG3_UNCR.dcm")],
        }
        s = args.size
        ours = build_preprocess(MedicalDataOptions(image_size=s))
        monai = Compose([LoadImage(image_only=True, reader="PydicomReader"), EnsureChannelFirst(),
                         Resize(spatial_size=s, size_mode="longest", mode="area"), SpatialPad((s, s)), NormalizeIntensity()])
        pipelines = {"mmapps": lambda p: ours(p)[0], "monai": monai}
        results = {}
        for label, paths in sets.items():
            for fn in pipelines.values():
                fn(paths[0])  # warm-up: imports, decoder plugins
            samples = {name: {"wall": [], "cpu": []} for name in pipelines}
            for _ in range(args.rounds):
                for name, fn in pipelines.items():  # A B A B ...
                    wall, cpu = _time(fn, paths, s)
                    samples[name]["wall"].append(wall)
                    samples[name]["cpu"].append(cpu)
            row = {"images": len(paths), "rounds": args.rounds}
            for name, sample in samples.items():
                for kind in ("wall", "cpu"):
                    row[f"{name}_{kind}_median_ms"] = 1000 * statistics.median(sample[kind])
                    row[f"{name}_{kind}_min_ms"] = 1000 * min(sample[kind])
            row["ratio_wall"] = row["monai_wall_median_ms"] / row["mmapps_wall_median_ms"]
            row["ratio_cpu"] = row["monai_cpu_median_ms"] / row["mmapps_cpu_median_ms"]
            results[label] = row
            print(f"{label:22s} mmapps {row['mmapps_wall_median_ms']:.1f} ms/img  MONAI {row['monai_wall_median_ms']:.1f} ms/img  "
                  f"ratio wall {row['ratio_wall']:.2f} cpu {row['ratio_cpu']:.2f}", flush=True)
        rows = [[label, r["images"], r["mmapps_wall_median_ms"], r["mmapps_wall_min_ms"], r["monai_wall_median_ms"], r["monai_wall_min_ms"],
                 r["ratio_wall"], r["mmapps_cpu_median_ms"], r["monai_cpu_median_ms"], r["ratio_cpu"]] for label, r in results.items()]
        markdown = (
            "# DICOM decode + preprocessing, cold\n\n"
            f"`python benchmarks/medical_decode.py --n {args.n} --size {args.size} --rounds {args.rounds}`. Baseline: MONAI "
            "`LoadImage(reader=\"PydicomReader\")` + EnsureChannelFirst + the same Resize / SpatialPad / NormalizeIntensity on the "
            f"same files, alternated ABAB over {args.rounds} rounds in one process; times are per image. Goal (issue 10): "
            ">= 2x on demo, uncompressed and JPEG 2000; >= 1x on JPEG-LS.\n\n"
            + table(["files", "images", "mmapps wall median ms", "min", "MONAI wall median ms", "min", "ratio wall",
                     "mmapps CPU median ms", "MONAI CPU median ms", "ratio CPU"], rows)
            + f"\n\nMachine: {machine()}\n"
        )
        write_results("medical_decode", {"args": vars(args), "results": results, "machine": machine()}, markdown)
        print(markdown)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
