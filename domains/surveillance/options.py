"""Surveillance-specific ``data.options`` (validated; unknown keys are refused)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mmapps_domains.surveillance.windows import WindowSpec


class SurveillanceDataOptions(BaseModel):
    """Options under ``data.options`` for the surveillance domain.

    Attributes:
        classes: event classes in output order (XD-Violence: fighting, shooting, riot, abuse,
            car_accident, explosion; UCF-Crime: its 13 anomaly classes in lower case).
        regime: ``supervised`` (per-window labels from segments) or ``weak`` (training clips give
            clip labels only; per-window targets are NaN and the MIL ranking loss is used).
        window_s, frames_per_window, frame_size, channels, sample_rate, n_mels, mel_frames: see `WindowSpec`.
        motion_channel: append |frame - previous frame| (within the window) as an extra channel, so
            the video encoder sees motion directly (set the video encoder's ``in_channels`` to
            ``channels + 1``).
        label_overlap: fraction of a window a segment must cover to label it.
        manifest: manifest file name in the data root.
        val_fraction, test_fraction: split of clips whose manifest line has no ``split``.
        require_audio: a clip without any audio is an issue instead of an absent modality.
        features_dim: width of pre-extracted features (``features`` modality), if used.
        alert_threshold: score above which a window raises an alert (``watch``, alarm metrics fallback).
        max_context: windows of past a stream keeps (``watch`` and the exported step graph): the
            attention keys/values sit in a ring buffer of this many windows (see `streaming`).
    """

    model_config = ConfigDict(extra="forbid")

    classes: list[str] = Field(default_factory=lambda: ["fight", "fall", "intrusion"], min_length=1)
    regime: Literal["supervised", "weak"] = "supervised"
    window_s: float = Field(1.0, gt=0)
    frames_per_window: int = Field(4, ge=1)
    frame_size: int = Field(32, ge=8)
    channels: Literal[1, 3] = 1
    motion_channel: bool = True
    sample_rate: int = Field(16000, ge=1000)
    n_mels: int = Field(32, ge=4)
    mel_frames: int = Field(16, ge=2)
    label_overlap: float = Field(0.3, gt=0, le=1)
    manifest: str = "manifest.jsonl"
    val_fraction: float = Field(0.2, ge=0, lt=1)
    test_fraction: float = Field(0.2, ge=0, lt=1)
    require_audio: bool = False
    features_dim: int | None = None
    alert_threshold: float = Field(0.5, gt=0, lt=1)
    max_context: int = Field(600, ge=1)

    def window_spec(self) -> WindowSpec:
        return WindowSpec(
            window_s=self.window_s, frames_per_window=self.frames_per_window, height=self.frame_size, width=self.frame_size,
            channels=self.channels, sample_rate=self.sample_rate, n_mels=self.n_mels, mel_frames=self.mel_frames,
        )


def data_options(options: dict) -> SurveillanceDataOptions:
    """Validate ``cfg.data.options`` with a readable error."""
    from mmapps.config import validate_options

    return validate_options(SurveillanceDataOptions, options, "data.options")