"""Note section splitting and the report-leakage switch."""

from __future__ import annotations

import pytest

from mmapps_domains.medical.notes import ReportLeakageError, read_note, select_note_text, split_sections

REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with shortness of breath, cannot exclude pneumonia.

 HISTORY: Known heart failure.
 COMPARISON:  None.

 FINDINGS:
 Small left pleural effusion with a meniscus.
 IMPRESSION:  Left effusion. No pneumothorax.
"""


def test_split_sections_of_a_mimic_style_report():
    parts = split_sections(REPORT)
    assert parts["indication"] == "F with shortness of breath, cannot exclude pneumonia."
    assert parts["history"] == "Known heart failure."
    assert parts["findings"] == "Small left pleural effusion with a meniscus."
    assert parts["impression"] == "Left effusion. No pneumothorax."
    assert parts["preamble"] == "FINAL REPORT"
    assert parts["examination"] == "CHEST (PA AND LAT)"


def test_default_input_is_clinical_context_only():
    text = select_note_text(REPORT)
    assert text == "INDICATION: F with shortness of breath, cannot exclude pneumonia. HISTORY: Known heart failure."
    assert "effusion" not in text.lower()


def test_leakage_needs_the_switch():
    with pytest.raises(ReportLeakageError, match="allow-report-leakage"):
        select_note_text(REPORT, sections=("indication", "findings", "impression"))
    text = select_note_text(REPORT, sections=("indication", "findings", "impression"), allow_report_leakage=True)
    assert "FINDINGS: Small left pleural effusion" in text and "IMPRESSION: Left effusion" in text


def test_referral_note_without_headers_is_all_context_and_missing_is_none():
    assert select_note_text("Cough for 3 weeks.\nNo known effusion.") == "Cough for 3 weeks. No known effusion."
    assert select_note_text(None) is None and select_note_text("   ") is None
    assert select_note_text("FINDINGS: clear lungs.") is None  # headers, but no context section
    with pytest.raises(ValueError, match="accepted"):
        select_note_text("x", sections=("bogus",))


def test_read_note_from_path_or_inline(tmp_path):
    (tmp_path / "s1.txt").write_text("INDICATION: fever")
    assert read_note("s1.txt", tmp_path) == "INDICATION: fever"
    assert read_note("inline text", tmp_path) == "inline text"
    assert read_note("", tmp_path) is None
    with pytest.raises(FileNotFoundError, match="s2.txt"):
        read_note("s2.txt", tmp_path)
