"""Output names and stems (where a dream's files go)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from dreamsound.errors import OutputError
from dreamsound.outputs import dream_name, output_stem, sonify_name


def test_names_and_stems(tmp_path):
    report = SimpleNamespace(layer=None, channel=None, domain="spectrogram", rule=None,
                             flip=False, targets=[{"name": "Violin, fiddle"}])
    assert dream_name(report) == "dream-violin"
    assert dream_name(report, query="violin:1,flute:0.5") == "dream-violin+flute"
    layer = SimpleNamespace(**{**vars(report), "layer": "layer10/pointwise", "channel": 5,
                               "domain": "waveform", "rule": "filter", "flip": True})
    assert dream_name(layer) == "dream-layer-layer10_pointwise-c5-waveform-filter-flip"
    loop = tmp_path / "loop.wav"
    assert output_stem(str(loop), "dream-violin", None, several=False) == \
        tmp_path / "loop.dream-violin"
    assert output_stem("noise:3s", "dream-violin", None, several=False).name == \
        "noise-3s.dream-violin"
    assert output_stem(str(loop), "dream-violin", tmp_path / "x.wav", several=False) == \
        tmp_path / "x"
    assert output_stem(str(loop), "d", f"{tmp_path}/sub/", several=True) == \
        tmp_path / "sub" / "loop.d"
    with pytest.raises(OutputError, match="folder"):
        output_stem(str(loop), "d", tmp_path / "x", several=True)


def test_sonify_names():
    report = {"layer": None, "channel": None, "domain": "spectrogram", "target": "flute"}
    assert sonify_name(report) == "sonify-flute"
    assert sonify_name({**report, "layer": "conv1", "channel": 3, "target": None,
                        "domain": "waveform"}) == "sonify-layer-conv1-c3-waveform"
