"""Medical ``data.options``: validated by `MedicalDataOptions` (referenced from ``Domain.data_options``)."""

from __future__ import annotations

from typing import Literal

from mmapps_domains.medical.labels import CHEXPERT_FINDINGS
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class MedicalDataOptions(BaseModel):
    """Domain-specific data options (``--set data.options.<field>=<value>``)."""

    model_config = ConfigDict(extra="forbid")

    findings: list[str] = Field(default_factory=lambda: list(CHEXPERT_FINDINGS), description="label columns, in output order")
    uncertain: Literal["u-ignore", "u-zeros", "u-ones"] = Field("u-ignore", description="policy for -1 labels")
    blank: Literal["negative", "masked"] = Field("negative", description="policy for blank (not mentioned) labels")
    note_sections: list[str] = Field(default_factory=lambda: ["indication", "history"], description="note sections fed to the model")
    allow_report_leakage: bool = Field(
        False, description="allow FINDINGS / IMPRESSION as input (--allow-report-leakage); alone it feeds the full report"
    )
    views: Literal["all", "frontal", "lateral"] = Field("all", description="which images of a study to use")
    max_images: int = Field(2, ge=1, description="images per study kept (frontal first)")
    image_size: int = Field(128, ge=16, le=1024, description="square side after resize (longest side) and padding")
    augment: bool = Field(True, description="random affine / contrast / noise on the training split only")
    multiframe: Literal["first", "all", "reject"] = Field("first", description="policy for multi-frame DICOM objects")
    allowed_modalities: list[str] = Field(default_factory=lambda: ["CR", "DX"], description="accepted Modality values (the SOP class's when Modality is absent)")
    allow_color: bool = Field(False, description="accept RGB / YBR / PALETTE COLOR images as BT.601 luminance (no modality LUT or VOI); default: refused")
    skip_degenerate: bool = Field(True, description="skip constant images and images >= 95 % saturated after windowing, counted with the reason")
    manifest: str = Field("manifest.csv", description="manifest file name under data.root (or data.root is the CSV itself)")
    labels_csv: str | None = Field(None, description="label CSV joined by study_id when the manifest has no label columns (default: labels.csv beside it)")
    mimic_labels: Literal["chexpert", "negbio"] = Field("chexpert", description="which MIMIC-CXR-JPG label file to use")
    split_fractions: tuple[float, float, float] = Field((0.6, 0.2, 0.2), description="train/val/test patient fractions when no split is given")
    pos_weight: Literal["none", "auto"] = Field("none", description="BCE pos_weight: none, or auto = negatives/positives per finding on train")
    validate_images: bool = Field(True, description="decode every image while indexing so bad files are skipped before training")

    @field_validator("split_fractions")
    @classmethod
    def _sums_to_one(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if abs(sum(value) - 1.0) > 1e-6 or min(value) < 0:
            raise ValueError(f"split_fractions {value} must be three non-negative numbers summing to 1")
        return value

    @field_validator("note_sections")
    @classmethod
    def _known_sections(cls, value: list[str]) -> list[str]:
        from mmapps_domains.medical.notes import KNOWN_SECTIONS

        bad = [s for s in value if s not in KNOWN_SECTIONS]
        if bad:
            raise ValueError(f"note_sections {bad}: accepted {list(KNOWN_SECTIONS)}")
        return value

    @model_validator(mode="after")
    def _leakage_switch(self) -> MedicalDataOptions:
        from mmapps_domains.medical.notes import LEAKING_SECTIONS

        if self.allow_report_leakage and "note_sections" not in self.model_fields_set:
            # the switch alone means "feed the whole report"; an explicit section list is kept as given
            self.note_sections = ["indication", "history", *LEAKING_SECTIONS]
        leaking = [s for s in self.note_sections if s in LEAKING_SECTIONS]
        if leaking and not self.allow_report_leakage:
            raise ValueError(
                f"note_sections {leaking} hold the text the labels were extracted from; "
                "using them requires --allow-report-leakage (data.options.allow_report_leakage=true)"
            )
        return self


def reader_options(options: MedicalDataOptions) -> dict:
    """Keyword arguments of `mmapps_domains.medical.dicom.read_dicom_xray` set by the data options.

    The multi-frame policy ``all`` is applied as ``first``: one image per DICOM object keeps a
    study's element axis meaning "images" (documented in docs/medical.md).
    """
    return {
        "allowed_modalities": list(options.allowed_modalities),
        "multiframe": "first" if options.multiframe == "all" else options.multiframe,
        "allow_color": options.allow_color,
        "skip_degenerate": options.skip_degenerate,
    }


def parse_options(raw: dict) -> MedicalDataOptions:
    """Validate ``cfg.data.options`` into `MedicalDataOptions` (one readable error on a bad value)."""
    from mmapps.config import validate_options

    return validate_options(MedicalDataOptions, raw, "data.options")