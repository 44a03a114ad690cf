"""Objectives: target specs, their resolution on a model, layer and class objectives."""

from __future__ import annotations

import pytest

from dreamsound.engine.objectives import parse_target_spec, resolve_targets
from dreamsound.errors import TargetError


def test_parse_target_spec():
    assert parse_target_spec("violin") == [("violin", 1.0)]
    assert parse_target_spec("Violin, fiddle") == [("Violin, fiddle", 1.0)]
    assert parse_target_spec("violin:1,flute:0.5") == [("violin", 1.0), ("flute", 0.5)]
    assert parse_target_spec("Violin, fiddle:2, piano:-1") == [("Violin, fiddle", 2.0),
                                                               ("piano", -1.0)]
    with pytest.raises(TargetError, match="weighted target"):
        parse_target_spec("violin:1,flute")


def test_resolve_targets(debug_model):
    terms = resolve_targets(debug_model, "vio:1,flute:0.5")
    assert [(t.name, t.weight) for t in terms] == [("violin", 1.0), ("flute", 0.5)]
    assert resolve_targets(debug_model, {"cello": 2})[0].index == 0
    assert resolve_targets(debug_model, 6)[0].name == "piano"
    with pytest.raises(TargetError, match="Did you mean"):
        resolve_targets(debug_model, "violinn")
    with pytest.raises(TargetError, match="positive weight"):
        resolve_targets(debug_model, "violin:-1")
