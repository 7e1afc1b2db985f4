"""Domain CLI verbs: ``mmapps surveillance watch CLIP [--audio FILE] [--chat FILE]``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def add_commands(app: typer.Typer) -> None:
    """Add ``watch`` to the domain's Typer app (imports stay inside the command)."""
    from mmapps.cli.errors import user_errors

    @app.command("watch")
    @user_errors
    def watch(
        clip: Path = typer.Argument(..., help="video clip (any FFmpeg container/codec)"),
        checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="trained model (runs/.../checkpoints/best.safetensors)"),
        audio: Optional[Path] = typer.Option(None, "--audio", help="separate WAV/FLAC/MP3/OGG instead of the clip's track"),
        chat: Optional[Path] = typer.Option(None, "--chat", help="chat log (JSONL or CSV)"),
        start_time: Optional[str] = typer.Option(None, "--start-time", help="clip start (ISO-8601) for ISO chat times"),
        out: Path = typer.Option(Path("alerts.jsonl"), "--out", "-o", help="alerts JSON Lines"),
        scores_out: Optional[Path] = typer.Option(None, "--scores", help="also write per-window scores (JSONL)"),
        threshold: Optional[float] = typer.Option(None, "--threshold", help="alert threshold (default: the run's validation-tuned alarm/threshold, else data.options.alert_threshold)"),
        threads: int = typer.Option(1, "--threads", min=0, help="torch threads (0 = torch's default)"),
    ) -> None:
        """Stream a recording through a trained model; write alerts (start, end, class, score) as they close."""
        from mmapps_domains.surveillance.watch import watch_clip

        result = watch_clip(clip, checkpoint, audio=audio, chat=chat, start_time=start_time, out=out, scores_out=scores_out, threshold=threshold, threads=threads or None)
        typer.echo(f"{result.n_alerts} alert(s) over {result.n_windows} windows ({result.duration:.1f} s of video, "
                   f"{result.real_time_factor:.1f}x real time) -> {out}")
