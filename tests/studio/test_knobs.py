"""The studio's controls come from DreamConfig: every knob, its default, bounds and help, and the
page's values back into a validated config (no gradio needed)."""

from __future__ import annotations

import dataclasses

import pytest

from dreamsound.config import DreamConfig
from dreamsound.errors import ConfigError
from dreamsound.studio.knobs import (
    MAIN_KNOBS,
    config_from_values,
    defaults,
    knob_controls,
    main_and_advanced,
    sonify_controls,
)


def test_every_knob_has_one_control_with_its_metadata():
    controls = knob_controls()
    assert [c.name for c in controls] == [f.name for f in DreamConfig.knobs()]
    for control, field in zip(controls, DreamConfig.knobs()):
        assert control.help == field.metadata["help"]
        assert control.flag == field.metadata["flag"]
        assert (control.minimum, control.maximum) == (field.metadata["min"],
                                                      field.metadata["max"])
        if control.kind == "choice":
            assert field.default is None or field.default in control.choices


def test_main_and_advanced_split_every_knob_once():
    main, advanced = main_and_advanced()
    assert [c.name for c in main] == [n for n in MAIN_KNOBS
                                      if n in {f.name for f in DreamConfig.knobs()}]
    assert {"steps", "until", "max_rmse_db", "step_size"} <= {c.name for c in main}
    names = [c.name for c in main + advanced]
    assert sorted(names) == sorted(f.name for f in DreamConfig.knobs())


def test_an_untouched_page_is_the_default_config():
    assert config_from_values(defaults(knob_controls())) == DreamConfig()
    assert config_from_values(defaults(sonify_controls())) == DreamConfig()


def test_page_values_become_knobs():
    config = config_from_values({"steps": 7.0, "until": "0.9", "max_rmse_db": " 2 ",
                                 "step_size": "", "limit": True, "domain": "waveform",
                                 "snapshot_every": float("nan")})
    assert config.steps == 7 and isinstance(config.steps, int)
    assert config.until == 0.9 and config.max_rmse_db == 2.0
    assert config.step_size is None and config.snapshot_every is None
    assert config.limit is False  # the control is "no limit"
    assert config.domain == "waveform"


def test_negated_knob_reads_as_its_flag():
    (limit,) = [c for c in knob_controls(["limit"])]
    assert limit.negated and limit.label == "no limit" and limit.default is False


@pytest.mark.parametrize(("values", "message"), [
    ({"until": "often"}, "--until must be a number, got 'often'"),
    ({"steps": 2.5}, "steps must be a whole number"),
    ({"steps": -1}, "--steps must be >= 0"),
    ({"stepz": 3}, "unknown dream setting 'stepz'. Did you mean: steps"),
])
def test_bad_values_are_the_library_one_line_errors(values, message):
    with pytest.raises(ConfigError, match=message) as caught:
        config_from_values(values)
    assert "\n" not in str(caught.value)


def test_unknown_control_name_is_refused():
    with pytest.raises(KeyError):
        knob_controls(["steps", "no_such_knob"])


def test_controls_are_plain_data():
    control = knob_controls(["steps"])[0]
    assert dataclasses.asdict(control)["default"] == DreamConfig().steps
