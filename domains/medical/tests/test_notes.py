"""Note section splitting, the context-only rule, report-header variants, note files (plain text and BioC XML)."""

from __future__ import annotations

import pytest
from mmapps_domains.medical.notes import (
    NoteRefusedError,
    ReportLeakageError,
    read_note_file,
    select_note,
    select_note_text,
    split_sections,
)

REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with shortness of breath, cannot exclude pneumonia.

 HISTORY: Known heart failure.
 COMPARISON:  None.

 FINDINGS:
 Small left pleural effusion with a meniscus.
 IMPRESSION:  Left effusion. No pneumothorax.
"""
CONTEXT = "INDICATION: F with shortness of breath, cannot exclude pneumonia. HISTORY: Known heart failure."


def test_split_sections_of_a_mimic_style_report():
    parts = split_sections(REPORT)
    assert parts["indication"] == "F with shortness of breath, cannot exclude pneumonia."
    assert parts["history"] == "Known heart failure."
    assert parts["findings"] == "Small left pleural effusion with a meniscus."
    assert parts["impression"] == "Left effusion. No pneumothorax."
    assert parts["examination"] == "CHEST (PA AND LAT)" and "preamble" not in parts  # the title is not text


def test_default_input_is_clinical_context_only():
    chosen = select_note(REPORT, kind="report")
    assert chosen.text == CONTEXT and chosen.fed == "INDICATION+HISTORY sections"
    assert select_note(REPORT).text == CONTEXT  # headers alone tell it is a report


# Report text in the variants real reports use: none of it may reach the input as context.
VARIANTS = [
    "INDICATION: cough.\nFINDINGS AND IMPRESSION: Left effusion.",
    "INDICATION: cough.\nIMPRESSION\nLeft effusion.",
    "INDICATION: cough.\nOPINION: Left effusion.",
    "INDICATION: cough.\nCONCLUSION\nLeft effusion.",
    "indication: cough.\nimpression: Left effusion.",
    "Indication: cough.\nImpression Left effusion.",
    "INDICATION: cough.\nconclusion left effusion.",
    "INDICATION: cough.\nIMPRESSION Left effusion.",
    "INDICATION: cough.\nFindings/Impression: Left effusion.",
    "INDICATION: cough.\nWET READ: Left effusion.",
    "INDICATION: cough. FINDINGS: Left effusion. IMPRESSION: Left effusion.",  # a flattened report
    "INDICATION: cough.\n  Impression  :  Left effusion.",
]


@pytest.mark.parametrize("note", VARIANTS)
def test_report_header_variants_never_pass_as_context(note):
    chosen = select_note(note)
    assert chosen.text == "INDICATION: cough." and "effusion" not in chosen.text.lower()


@pytest.mark.parametrize("note", ["Left effusion. No pneumothorax.", "Small left effusion.\n\nNo acute process."])
def test_header_less_text_is_refused_unless_declared(note):
    with pytest.raises(NoteRefusedError, match="study 7: the note has no section header.*note_kind"):
        select_note(note, where="study 7")
    assert select_note(note, kind="referral").fed == "whole note (note_kind=referral)"
    with pytest.raises(NoteRefusedError, match="no section header"):
        select_note(note, kind="report")  # a report without headers cannot be sectioned


def test_unknown_headers_are_refused_and_declared_context_with_report_headers_too():
    with pytest.raises(NoteRefusedError, match=r"study 3: the note has header\(s\) \['ADDITIONAL NOTE'\]"):
        select_note("INDICATION: cough.\nAdditional note: effusion seen on the bedside film.", where="study 3")
    with pytest.raises(NoteRefusedError, match="note_kind is 'referral' but the note has report header"):
        select_note("Dear colleague, please image.\nIMPRESSION: effusion", kind="referral")
    letter = "Dear Dr Smith:\nCough for 3 weeks, cannot exclude pneumonia."
    assert select_note(letter, kind="referral").text == "Dear Dr Smith: Cough for 3 weeks, cannot exclude pneumonia."


def test_only_context_headers_is_context_and_a_report_without_context_feeds_nothing():
    note = "Reason for exam: fever.\nClinical information: known CHF\nComparison: none"
    assert select_note(note).text == "INDICATION: fever. HISTORY: known CHF"
    assert select_note("FINDINGS: clear lungs.").text is None
    assert select_note(None).text is None and select_note("   ").text is None


def test_leakage_needs_the_switch():
    with pytest.raises(ReportLeakageError, match="allow-report-leakage"):
        select_note_text(REPORT, sections=("indication", "findings", "impression"))
    text = select_note_text(REPORT, sections=("indication", "findings", "impression"), allow_report_leakage=True)
    assert "FINDINGS: Small left pleural effusion" in text and "IMPRESSION: Left effusion" in text
    whole = select_note("Left effusion.", allow_report_leakage=True)
    assert whole == ("Left effusion.", "whole note (leakage allowed)")
    with pytest.raises(ValueError, match="accepted"):
        select_note_text("x", sections=("bogus",))
    with pytest.raises(ValueError, match="note_kind 'letter'"):
        select_note("x", kind="letter")


def test_note_files_txt_missing_and_unsupported_suffixes(tmp_path):
    (tmp_path / "s1.txt").write_text("INDICATION: fever")
    assert read_note_file("s1.txt", tmp_path) == "INDICATION: fever"
    with pytest.raises(FileNotFoundError, match="s2.txt: note file not found"):
        read_note_file("s2.txt", tmp_path)
    (tmp_path / "s3.csv").write_text("study,note\n1,x\n")
    for name in ("s3.csv", "s4.json", "notes/s5"):
        with pytest.raises(ValueError, match="suffix .* is not supported; accepted .txt, .xml"):
            read_note_file(name, tmp_path)


def _bioc(tmp_path, passages, doctype: str = ""):
    """A BioC collection written with the stdlib, as NegBio / bioc-python write them."""
    import xml.etree.ElementTree as ET

    collection = ET.Element("collection")
    ET.SubElement(collection, "source").text = "MIMIC-CXR"
    document = ET.SubElement(collection, "document")
    ET.SubElement(document, "id").text = "s50000001"
    offset = 0
    for section, text in passages:
        passage = ET.SubElement(document, "passage")
        if section:
            infon = ET.SubElement(passage, "infon", key="section")
            infon.text = section
        ET.SubElement(passage, "offset").text = str(offset)
        ET.SubElement(passage, "text").text = text
        offset += len(text) + 1
    path = tmp_path / "s50000001.xml"
    path.write_bytes(b'<?xml version="1.0" encoding="UTF-8"?>' + doctype.encode() + ET.tostring(collection))
    return path


def test_bioc_xml_notes_are_read_by_section(tmp_path):
    path = _bioc(tmp_path, [("indication", "Cough & fever."), ("findings", "Left effusion."), ("impression", "Effusion.")],
                 '<!DOCTYPE collection SYSTEM "BioC.dtd">')
    text = read_note_file(path.name, tmp_path)
    assert text == "INDICATION: Cough & fever.\nFINDINGS: Left effusion.\nIMPRESSION: Effusion."
    assert select_note(text).text == "INDICATION: Cough & fever."
    bare = _bioc(tmp_path, [(None, "Left effusion.")])
    with pytest.raises(NoteRefusedError, match="no section header"):
        select_note(read_note_file(bare))


def test_bioc_entity_expansion_and_malformed_xml_are_refused(tmp_path):
    bomb = tmp_path / "bomb.xml"
    bomb.write_text('<?xml version="1.0"?><!DOCTYPE c [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
                    "<collection><document><passage><text>&b;</text></passage></document></collection>")
    with pytest.raises(ValueError, match="bomb.xml: BioC XML note the file declares XML entities"):
        read_note_file(bomb)
    external = tmp_path / "ext.xml"
    external.write_text('<?xml version="1.0"?><!DOCTYPE c [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                        "<collection><document><passage><text>&x;</text></passage></document></collection>")
    with pytest.raises(ValueError, match="ext.xml: BioC XML note"):
        read_note_file(external)
    broken = tmp_path / "broken.xml"
    broken.write_text("<collection><document><passage><text>cut")
    with pytest.raises(ValueError, match="broken.xml: malformed XML note"):
        read_note_file(broken)
    other = tmp_path / "other.xml"
    other.write_text("<html><body>INDICATION: x</body></html>")
    with pytest.raises(ValueError, match="must be a BioC collection"):
        read_note_file(other)
