"""BioC XML notes (the format NegBio and many clinical-NLP tools write), read safely with the stdlib.

A BioC collection holds documents, each a list of passages with ``<infon key="...">`` pairs and a
``<text>``. A passage whose infon ``section`` / ``section_type`` / ``title`` / ``type`` names a
section becomes ``"NAME: text"``, so `mmapps_domains.medical.notes.select_note` applies the same
header rules as to plain text. Only the first document is read (one note per study).

Safety (what defusedxml enforces): entity declarations are refused (no "billion laughs" expansion),
external entities and DTDs are never fetched (expat does not, and the handler refuses them), and
the file is parsed from bytes already read, so nothing reaches the network.
"""

from __future__ import annotations

from pathlib import Path
from xml.parsers import expat

_SECTION_KEYS = ("section", "section_type", "title", "type")


class _Refused(Exception):
    pass


def read_bioc_text(path: Path) -> str:
    """The note text of a BioC XML file.

    Raises:
        ValueError: not BioC, malformed XML, entity declarations, or no passage text.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise ValueError(f"{path}: note file could not be read ({err.strerror or err})") from None
    passages: list[tuple[str | None, str]] = []
    state = {"documents": 0, "depth_in_passage": 0, "infon": None, "infons": {}, "text": [], "field": None, "buffer": []}

    def refuse_entity(*_args) -> None:
        raise _Refused("the file declares XML entities (refused: entity expansion is a denial-of-service vector)")

    def refuse_external(*_args) -> int:
        raise _Refused("the file references an external entity (refused: nothing is fetched)")

    def start(name: str, attrs: dict) -> None:
        if name == "document":
            state["documents"] += 1
        if state["documents"] != 1:
            return
        if name == "passage":
            state["depth_in_passage"], state["infons"], state["text"] = 1, {}, []
        elif state["depth_in_passage"] and name in ("infon", "text"):
            state["field"], state["buffer"] = (("infon", attrs.get("key", "")) if name == "infon" else ("text", None)), []

    def end(name: str) -> None:
        if state["documents"] != 1 or not state["depth_in_passage"]:
            return
        if name in ("infon", "text") and state["field"] is not None:
            kind, key = state["field"]
            value = "".join(state["buffer"])
            if kind == "infon":
                state["infons"][key.lower()] = value.strip()
            else:
                state["text"].append(value)
            state["field"] = None
        elif name == "passage":
            section = next((state["infons"][k] for k in _SECTION_KEYS if state["infons"].get(k)), None)
            passages.append((section, " ".join(state["text"]).strip()))
            state["depth_in_passage"] = 0

    def chars(text: str) -> None:
        if state["field"] is not None:
            state["buffer"].append(text)

    parser = expat.ParserCreate()
    parser.EntityDeclHandler = refuse_entity
    parser.UnparsedEntityDeclHandler = refuse_entity
    parser.ExternalEntityRefHandler = refuse_external
    parser.StartElementHandler, parser.EndElementHandler, parser.CharacterDataHandler = start, end, chars
    try:
        parser.Parse(data, True)
    except _Refused as err:
        raise ValueError(f"{path}: BioC XML note {err}") from None
    except expat.ExpatError as err:
        raise ValueError(f"{path}: malformed XML note ({expat.errors.messages.get(err.code, err)} at line {err.lineno})") from None
    if state["documents"] == 0:
        raise ValueError(f"{path}: an .xml note must be a BioC collection (<collection><document><passage>...); no <document> found")
    parts = [f"{section.upper()}: {text}" if section and section.lower() not in ("paragraph", "text", "document") else text
             for section, text in passages if text]
    if not parts:
        raise ValueError(f"{path}: the BioC document has no passage text")
    return "\n".join(parts)
