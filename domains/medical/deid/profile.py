"""De-identify one dataset: the table walk, the file meta, the preamble, and the record of what was done."""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

from .engine import WalkContext, collect_identifiers, walk
from .keys import DeidKey
from .options import DeidOptions
from .pixels import clear_bits_above_high_bit
from .safe_private import SafePrivateKey, shipped_safe_private
from .table import ProfileTable, load_profile_table
from .values import identifier_tokens

# File meta elements that name the sending / receiving systems (PS3.10 Table 7.1-1): never kept.
FILE_META_IDENTIFYING = (0x00020016, 0x00020017, 0x00020018, 0x00020026, 0x00020027, 0x00020028, 0x00020100, 0x00020102)
IMPLEMENTATION_VERSION = "MMAPPS_DEID_1"


class DatasetResult(NamedTuple):
    """What `deidentify_dataset` did."""

    counts: Counter
    sop_instance_uid: str
    identity_removed: bool


def deidentify_dataset(
    ds: Dataset,
    key: DeidKey,
    options: DeidOptions | None = None,
    *,
    pixels_verified: bool = True,
    safe_private: frozenset[SafePrivateKey] | None = None,
    table: ProfileTable | None = None,
    fallback_label: str = "",
) -> DatasetResult:
    """Apply the Basic Profile (and the options) to ``ds`` in place, file meta and preamble included.

    Args:
        ds: a dataset as read by pydicom (``file_meta`` and ``preamble`` optional).
        key: the user's key (UIDs, PatientID pseudonym, date shift).
        options: the PS3.15 E.3 options (default: none).
        pixels_verified: False when the pixels may carry burned-in identifiers: PatientIdentityRemoved
            is then NO (PS3.15 E.1.1: YES only when every identifier, pixels included, is removed).
        safe_private: the safe private list for Retain Safe Private (default: the shipped Table E.3.10-1 entries).
        table: Table E.1-1 (default: the shipped one).
        fallback_label: stable text (e.g. a content hash) for a SOP Instance UID when the file has none.

    Returns:
        `DatasetResult` with the action counts and the new SOP Instance UID.
    """
    options = options or DeidOptions()
    table = table or load_profile_table()
    sop_class = str(ds.get("SOPClassUID", "") or "")
    patient_id = str(ds.get("PatientID", "") or "")
    cleaning = options.clean_descriptors or options.clean_structured_content or options.clean_graphics
    ctx = WalkContext(
        table=table, options=options, key=key,
        safe_private=safe_private if safe_private is not None else shipped_safe_private(),
        sop_class=sop_class, top=ds, tokens=identifier_tokens(collect_identifiers(ds)) if cleaning else [],
        shift_days=key.date_shift_days(patient_id) if options.retain_modified_dates else 0, counts=Counter(),
    )
    old_meta_uid = str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPInstanceUID", "") or "")
    walk(ds, ctx)
    if "SOPInstanceUID" not in ds or not str(ds.SOPInstanceUID).strip():
        # the instance needs an identity: from the file meta's (mapped like any UID), else from the content
        ds.SOPInstanceUID = key.uid(old_meta_uid) if old_meta_uid else key.dummy_uid(fallback_label)
        ctx.counts["SOPInstanceUID supplied"] += 1
    overlay_row = table.row_for(0x60003000)
    if overlay_row is not None and overlay_row.action(options.enabled) in ("X", "C"):
        changed = clear_bits_above_high_bit(ds)
        if changed:
            ctx.counts["pixels with overlay bits above HighBit cleared"] += changed
    _clean_file_meta(ds, ctx.counts)
    _record_method(ds, options, pixels_verified)
    return DatasetResult(ctx.counts, str(ds.SOPInstanceUID), pixels_verified)


def _clean_file_meta(ds: Dataset, counts: Counter) -> None:
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        meta = ds.file_meta = FileMetaDataset()
    for tag in FILE_META_IDENTIFYING:
        if tag in meta:
            del meta[tag]
            counts["file meta elements removed"] += 1
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if "SOPClassUID" in ds:
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    ds.preamble = b"\x00" * 128  # pydicom would keep the input's preamble (it can hold anything)


def _record_method(ds: Dataset, options: DeidOptions, pixels_verified: bool) -> None:
    ds.PatientIdentityRemoved = "YES" if pixels_verified else "NO"
    ds.DeidentificationMethod = options.method_text()
    codes = []
    for code in options.method_codes():
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code.value, "DCM", code.meaning
        codes.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(codes)
    if options.retain_full_dates:
        ds.LongitudinalTemporalInformationModified = "UNMODIFIED"
    elif options.retain_modified_dates:
        ds.LongitudinalTemporalInformationModified = "MODIFIED"
    else:
        ds.LongitudinalTemporalInformationModified = "REMOVED"
