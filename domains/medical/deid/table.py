"""PS3.15 Table E.1-1 as data: one row per attribute (or tag mask), looked up by tag, never by keyword.

The table ships as package data (``profile_table.json``, MIT, Innolitics; notice in ``LICENSE.txt``).
Tags with ``xx`` masks (``(50XX,XXXX)`` curve data, ``(60XX,3000)`` overlay data...) match every group
of the repeating range; the private-attribute row (odd groups) is handled by `engine` through
`safe_private`, and the file meta group (0002), which the table does not list, by `filemeta`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

# DeidOptions field -> column of the table (Table E.1-1 option columns).
OPTION_COLUMNS: dict[str, str] = {
    "retain_safe_private": "rtnSafePrivOpt",
    "retain_uids": "rtnUIDsOpt",
    "retain_device_identity": "rtnDevIdOpt",
    "retain_institution_identity": "rtnInstIdOpt",
    "retain_patient_characteristics": "rtnPatCharsOpt",
    "retain_full_dates": "rtnLongFullDatesOpt",
    "retain_modified_dates": "rtnLongModifDatesOpt",
    "clean_descriptors": "cleanDescOpt",
    "clean_structured_content": "cleanStructContOpt",
    "clean_graphics": "cleanGraphOpt",
}
SINGLE_ACTIONS = {"X", "Z", "D", "U", "K", "C"}
CONDITIONAL_ACTIONS = {"X/Z", "X/D", "X/Z/D", "Z/D", "X/Z/U*"}


@dataclass(frozen=True)
class ProfileRow:
    """One attribute of Table E.1-1: its tag (or mask), name, Basic Profile action and per-option actions."""

    tag: str
    name: str
    basic: str
    option_actions: Mapping[str, str] = field(default_factory=dict)
    in_standard_iod: bool = True

    def action(self, enabled: frozenset[str]) -> str:
        """The action with the given options (`OPTION_COLUMNS` keys) enabled.

        An option saying K (keep) wins over one saying C (clean), which wins over the Basic Profile,
        except that Retain Longitudinal Temporal Information with Modified Dates always shifts the dates
        it covers: keeping a device calibration date unshifted would reveal the offset.
        """
        said = {name: self.option_actions[OPTION_COLUMNS[name]] for name in enabled if OPTION_COLUMNS[name] in self.option_actions}
        if "retain_modified_dates" in said:
            return said["retain_modified_dates"]
        if "K" in said.values():
            return "K"
        if "C" in said.values():
            return "C"
        return self.basic


@dataclass(frozen=True)
class _Mask:
    mask: int
    value: int
    row: ProfileRow


class ProfileTable:
    """Table E.1-1 indexed by exact tag and by repeating-group masks.

    Args:
        rows: the rows (as in ``profile_table.json``).
    """

    def __init__(self, rows: list[dict]) -> None:
        self.exact: dict[int, ProfileRow] = {}
        self.masks: list[_Mask] = []
        self.private_row: ProfileRow | None = None
        for raw in rows:
            row = ProfileRow(
                tag=raw["tag"], name=raw["name"], basic=raw["basicProfile"],
                option_actions={k: v for k, v in raw.items() if k in OPTION_COLUMNS.values() and v},
                in_standard_iod=raw.get("stdCompIOD") == "Y",
            )
            if row.basic not in SINGLE_ACTIONS | CONDITIONAL_ACTIONS:
                raise ValueError(f"profile table row {row.tag} ({row.name}): action {row.basic!r}, accepted {sorted(SINGLE_ACTIONS | CONDITIONAL_ACTIONS)}")
            if "GGGG" in row.tag.upper():
                self.private_row = row
                continue
            mask, value = parse_tag_mask(row.tag)
            if mask == 0xFFFFFFFF:
                self.exact[value] = row
            else:
                self.masks.append(_Mask(mask, value, row))

    def row_for(self, tag: int) -> ProfileRow | None:
        """The row governing a (public) tag, or None when the table does not list it (the attribute is kept)."""
        row = self.exact.get(int(tag))
        if row is not None:
            return row
        for entry in self.masks:
            # repeating groups (50xx, 60xx) use even groups only: odd ones are private
            if int(tag) & entry.mask == entry.value and not (int(tag) >> 16) & 1:
                return entry.row
        return None

    def __len__(self) -> int:
        return len(self.exact) + len(self.masks) + (self.private_row is not None)


def parse_tag_mask(text: str) -> tuple[int, int]:
    """``"(60XX,3000)"`` -> (mask, value) with x digits masked out: (0xFF00FFFF, 0x60003000)."""
    digits = text.strip().strip("()").replace(",", "")
    if len(digits) != 8:
        raise ValueError(f"profile table tag {text!r}: expected (gggg,eeee) with hex digits or x masks")
    mask = value = 0
    for ch in digits:
        mask, value = mask << 4, value << 4
        if ch in "xX":
            continue
        mask |= 0xF
        value |= int(ch, 16)
    return mask, value


@lru_cache(maxsize=1)
def load_profile_table() -> ProfileTable:
    """The shipped Table E.1-1 (read once)."""
    text = resources.files("mmapps_domains.medical.deid").joinpath("profile_table.json").read_text(encoding="utf-8")
    return ProfileTable(json.loads(text))
