"""Domain CLI verbs: ``mmapps surveillance watch CLIP [--audio FILE] [--chat FILE]``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def add_commands(app: typer.Typer) -> None:
    """Add ``watch`` to the domain's Typer app (imports stay inside the command)."""
    from mmapps.cli.errors import echo_err, fail, user_errors

    @app.command("watch")
    @user_errors
    def watch(
        clip: Path = typer.Argument(..., help="video clip (any FFmpeg container/codec)"),
        checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="trained model (runs/.../checkpoints/best.safetensors), or an export folder / its model.onnx (onnxruntime)"),
        audio: Optional[Path] = typer.Option(None, "--audio", help="separate WAV/FLAC/MP3/OGG instead of the clip's track"),
        chat: Optional[Path] = typer.Option(None, "--chat", help="chat log (JSONL or CSV)"),
        start_time: Optional[str] = typer.Option(None, "--start-time", help="clip start (ISO-8601) for ISO chat times"),
        out: Path = typer.Option(Path("alerts.jsonl"), "--out", "-o", help="alerts JSON Lines"),
        scores_out: Optional[Path] = typer.Option(None, "--scores", help="also write per-window scores (JSONL)"),
        threshold: Optional[float] = typer.Option(None, "--threshold", help="alert threshold (default: the run's validation-tuned alarm/threshold, else data.options.alert_threshold)"),
        threads: int = typer.Option(1, "--threads", min=0, help="torch threads (0 = torch's default)"),
        prefetch: int = typer.Option(0, "--prefetch", min=0, help="windows decoded ahead in a background thread while the model scores (0: off; pays only where a core is idle)"),
        max_context: Optional[int] = typer.Option(None, "--max-context", min=1, help="windows of past the stream keeps (ring buffer; default data.options.max_context, fixed in an export)"),
        on_error: str = typer.Option("skip", "--on-error", help="skip: go on past bad chat lines, and without an unusable chat log (exit 3); stop: refuse both"),
    ) -> None:
        """Stream a recording through a trained model; write alerts (start, end, class, score) as they close."""
        from mmapps_domains.surveillance.watch import watch_clip

        if on_error not in ("skip", "stop"):
            raise typer.BadParameter(f"found {on_error!r}; expected skip or stop", param_hint="--on-error")
        result = watch_clip(clip, checkpoint, audio=audio, chat=chat, start_time=start_time, out=out, scores_out=scores_out,
                            threshold=threshold, threads=threads or None, on_error=on_error, prefetch=prefetch, max_context=max_context)
        for warning in result.warnings:
            echo_err(f"warning: {warning}")
        typer.echo(f"{result.n_alerts} alert(s) over {result.n_windows} windows ({result.duration:.1f} s of video, "
                   f"{result.real_time_factor:.1f}x real time) -> {out}")
        if result.unused_inputs:
            fail(f"watch ran without {', '.join(result.unused_inputs)} (unusable: see the warning above); the alerts use the other inputs only", code=3)
