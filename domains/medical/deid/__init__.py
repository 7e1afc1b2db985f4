"""De-identification of DICOM files to DICOM PS3.15 Annex E (Basic Application Level Confidentiality Profile).

Driven by Table E.1-1 as data (`table`), keyed by tag or tag mask; conditional actions resolved by the
IOD's requirement type (`requirement`); private attributes removed or kept per Table E.3.10-1
(`safe_private`); UIDs, the PatientID pseudonym and date shifts keyed by a user-held secret (`keys`).
See docs/deidentify.md for the options, the outputs and what Annex E does not cover.
"""

from .keys import DeidKey, load_key
from .options import DeidOptions, MethodCode
from .profile import DatasetResult, deidentify_dataset
from .tree import DeidSummary, FileOutcome, deidentify_tree, write_report

__all__ = [
    "DatasetResult", "DeidKey", "DeidOptions", "DeidSummary", "FileOutcome", "MethodCode",
    "deidentify_dataset", "deidentify_tree", "load_key", "write_report",
]
