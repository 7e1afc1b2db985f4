"""Driving-specific CLI verbs (added to ``mmapps driving``); imports stay inside the commands."""

from __future__ import annotations

from pathlib import Path

import typer


def evaluate_result_files(labels: Path, results: Path, classes: tuple[str, ...] = ("Car", "Pedestrian", "Cyclist"),
                          iou_precision: str = "float64") -> dict[str, float]:
    """KITTI AP of a folder of result files against a folder of label_2 files.

    The evaluated frames are those with a result file (a split's predictions), each needing its label file.
    """
    from mmapps_domains.driving.evaluation import kitti_eval
    from mmapps_domains.driving.kitti import objects_to_arrays, read_label

    result_files = sorted(Path(results).glob("*.txt"))
    if not result_files:
        raise FileNotFoundError(f"{results}: no result .txt files")
    missing = [p.name for p in result_files if not (Path(labels) / p.name).is_file()]
    if missing:
        raise FileNotFoundError(f"{labels}: no label file for {len(missing)} result file(s), e.g. {missing[:3]}")
    gts = [objects_to_arrays(read_label(Path(labels) / p.name)) for p in result_files]
    dts = [objects_to_arrays(read_label(p)) for p in result_files]
    return kitti_eval(gts, dts, classes, iou_precision=iou_precision).ap


def add_commands(app: typer.Typer) -> None:
    """Register ``mmapps driving kitti-eval``."""

    @app.command("kitti-eval")
    def kitti_eval_command(
        labels: Path = typer.Option(..., help="folder of ground-truth label_2 .txt files"),
        results: Path = typer.Option(..., help="folder of KITTI result files (label_2 with score)"),
        classes: str = typer.Option("Car,Pedestrian,Cyclist", help="comma-separated classes"),
        iou_precision: str = typer.Option("float64", "--iou-precision", help="float64 (exact) or float32 (as the python devkits of OpenPCDet / MMDetection3D)"),
    ) -> None:
        """KITTI AP (2D, BEV, 3D, AOS at R40 and R11) of result files written by any tool."""
        from mmapps_domains.driving.report import ap_table

        names = tuple(c.strip() for c in classes.split(",") if c.strip())
        if iou_precision not in ("float64", "float32"):
            raise typer.BadParameter(f"--iou-precision {iou_precision!r}: expected float64 or float32")
        ap = evaluate_result_files(labels, results, names, iou_precision)
        typer.echo(ap_table(ap, names))
