"""Config fields added after results and checkpoints were written, and the behaviour they had before.

A config dump written before a field existed means that field's earlier value: a checkpoint loads as the model
it was (``with_earlier_values``), and a finished benchmark cell whose config keeps the earlier value stays done
(its fingerprint leaves the field out).
"""

from __future__ import annotations

from typing import Any

#: later field → the value that reproduces the earlier behaviour; a loss field is addressed as
#: ("losses", loss type, field)
LATER_FIELDS: dict[tuple[str, ...], Any] = {
    ("model", "half_turns"): None,
    ("model", "upright"): None,
    ("model", "readout"): None,
    ("model", "readout", "classifier"): None,
    ("model", "readout", "half_turn_merge"): None,
    ("model", "readout", "classifier", "members"): 1,
    ("model", "readout", "classifier", "rounds"): 1,
    ("model", "readout", "classifier", "unsure_turns"): 1,
    ("model", "readout", "classifier", "kept_rounds"): 1,
    ("model", "readout", "classifier", "balanced"): False,
    ("model", "readout", "classifier", "cut_share"): 0.0,
    ("model", "readout", "classifier", "cut_distance"): [0.25, 0.8],
    ("model", "readout", "classifier", "unsure_teaching"): "as_is",
    ("model", "readout", "classifier", "unsure_ramp"): 0.0,
    ("model", "readout", "classifier", "frame_turns"): 1,
    ("train", "cluster_refit_every"): 0,
    ("losses", "invariance", "copy_gradients"): True,
}

#: fields that cannot act while another field is null (path → that field's path): left out of fingerprints then
INERT_WITHOUT: dict[tuple[str, ...], tuple[str, ...]] = {
    ("model", "readout", "classifier", "unsure_turns"): ("model", "upright"),  # no learned upright, none unsure
    ("model", "readout", "classifier", "unsure_teaching"): ("model", "upright"),
    ("model", "readout", "classifier", "unsure_ramp"): ("model", "upright"),
}


def section_of(config: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any] | None:
    """The dict holding ``path``'s last key, if the config has it."""
    section: Any = config
    for key in path[:-1]:
        section = section.get(key) if isinstance(section, dict) else None
    return section if isinstance(section, dict) else None


def sections_holding(config: dict[str, Any], path: tuple[str, ...]) -> list[dict[str, Any]]:
    """The dicts that hold ``path``'s last key: every loss of that type for a loss field, else its section."""
    if path[0] == "losses":
        return [loss for loss in config.get("losses") or [] if isinstance(loss, dict) and loss.get("type") == path[1]]
    section = section_of(config, path)
    return [] if section is None else [section]


def with_earlier_values(dump: dict[str, Any]) -> dict[str, Any]:
    """``dump`` (changed in place) with every later field it lacks set to its earlier value, where the section
    that would hold it is there."""
    for path, value in LATER_FIELDS.items():
        for section in sections_holding(dump, path):
            section.setdefault(path[-1], value)
    return dump
