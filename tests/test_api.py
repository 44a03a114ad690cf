"""The public API: Dreamer and the one-shot wrappers end to end, lazy exports, saving."""

from __future__ import annotations

import importlib
import itertools
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

import dreamsound
from dreamsound import metrics
from dreamsound.api import Dreamer, dream
from dreamsound.config import DreamConfig
from dreamsound.engine.constraints import DistancePenalty
from dreamsound.engine.domains import SpectrogramDomain
from dreamsound.engine.loop import Hooks, ascend
from dreamsound.engine.objectives import Objective, resolve_targets
from dreamsound.engine.result import DreamResult
from dreamsound.errors import AudioError, DreamsoundError, OutputError, TargetError
from tests.signals import SR, tone


def test_exports_are_functions_even_after_submodule_imports():
    # No submodule shares an exported function's name, so loading them shadows nothing.
    for module in ("api", "classification", "sonification", "experiments.evaluate"):
        importlib.import_module(f"dreamsound.{module}")

    for name in ("classify", "dream", "sonify", "evaluate", "load_model"):
        assert callable(getattr(dreamsound, name)), name


def test_import_is_light():
    code = "import sys, dreamsound; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_spectrogram_dream_raises_the_target(debug_model, chord):
    steps = []
    result = dream(chord, model=debug_model, target="flute", steps=8, sample_rate=SR,
                   progress=steps.append, domain="spectrogram")
    report = result.report
    assert isinstance(result, DreamResult)
    assert report["confidence_after"] > report["confidence_before"]
    assert report["objective_after"] > report["objective_before"]
    assert report["steps"] == 8 and [e.step for e in steps] == list(range(1, 9))
    assert all(e.total == 8 and e.stage == "dream" for e in steps)
    assert all(e.objective is not None and e.confidence is not None and e.rmse_db is not None
               and e.seconds > 0 for e in steps)
    # Distances come from dreamsound.metrics, on the spectrograms the result carries.
    sp = result.spectrograms
    assert report["rmse_db"] == pytest.approx(
        metrics.rmse_db(sp["original"], sp["dreamed"], front_end=debug_model.front_end))
    assert report["mse_db2"] == pytest.approx(report["rmse_db"] ** 2)
    assert result.audio.dtype == np.float32 and result.audio.shape == chord.shape
    assert np.isfinite(result.audio).all()
    assert np.abs(result.audio).max() <= 10 ** (-1 / 20) + 1e-6
    assert result.gradient.shape == sp["original"].shape
    assert result.gradient_audio.shape == chord.shape
    for key in ("model", "target", "domain", "steps", "seconds", "confidence_before",
                "confidence_after", "confidence_rendered", "rmse_db", "mse_db2", "outputs"):
        assert key in report


def test_step_size_is_mean_db_per_step(debug_model, chord):
    # One step with mean normalisation moves the log-mel by step_size dB on average.
    result = dream(chord, model=debug_model, target="flute", steps=1, step_size=0.7,
                   sample_rate=SR, domain="spectrogram")
    fe = debug_model.front_end
    change = metrics.mel_db(result.spectrograms["dreamed"], front_end=fe) - metrics.mel_db(
        result.spectrograms["original"], front_end=fe)
    moved = change.abs()
    real = moved[moved > 0]
    assert float(real.mean()) == pytest.approx(0.7, rel=0.05)


def test_until_stops_early(debug_model, chord):
    free = dream(chord, model=debug_model, target="flute", steps=30, sample_rate=SR)
    goal = free.report["confidence_before"] + 0.5 * (free.report["confidence_after"]
                                                     - free.report["confidence_before"])
    result = dream(chord, model=debug_model, target="flute", steps=30, until=goal,
                   sample_rate=SR)
    assert result.report["stopped"] == "until"
    assert 0 < result.report["steps"] < 30
    assert result.report["confidence_after"] >= goal


def test_until_rendered_checks_the_audio(debug_model, chord):
    free = dream(chord, model=debug_model, target="flute", steps=30, sample_rate=SR)
    goal = free.report["confidence_before"] + 0.4 * (free.report["confidence_rendered"]
                                                     - free.report["confidence_before"])
    result = dream(chord, model=debug_model, target="flute", steps=60, until=goal,
                   until_rendered=True, sample_rate=SR)
    assert result.report["stopped"] == "until"
    assert result.report["confidence_rendered"] >= goal  # what a listener gets meets the bar
    with pytest.raises(DreamsoundError, match="needs --until"):
        dream(chord, model=debug_model, target="flute", until_rendered=True, sample_rate=SR)


@pytest.mark.parametrize("domain", ["spectrogram", "waveform"])
def test_max_rmse_db_bounds_the_distance(debug_model, chord, domain):
    result = dream(chord, model=debug_model, target="flute", steps=15, domain=domain,
                   max_rmse_db=1.5, step_size=1.0 if domain == "spectrogram" else 0.3,
                   sample_rate=SR)
    assert result.report["rmse_db"] <= 1.5 + 1e-6
    assert result.report["rmse_db"] > 1.0  # it did move, up to the bound


def test_distance_weight_keeps_the_dream_closer(debug_model, chord):
    free = dream(chord, model=debug_model, target="flute", steps=12, sample_rate=SR)
    held = dream(chord, model=debug_model, target="flute", steps=12, distance_weight=5.0,
                 sample_rate=SR)
    assert held.report["rmse_db"] < free.report["rmse_db"]


def test_layer_objective(debug_model, chord):
    result = dream(chord, model=debug_model, layer="conv2", steps=5, sample_rate=SR)
    report = result.report
    assert report["objective"] == "layer" and report["target"] is None
    assert report["objective_after"] > report["objective_before"]
    assert report["confidence_before"] is None
    channel = dream(chord, model=debug_model, layer="conv1", channel=3, steps=3, sample_rate=SR)
    assert channel.report["objective_after"] > channel.report["objective_before"]
    with pytest.raises(TargetError, match="channels"):
        dream(chord, model=debug_model, layer="conv1", channel=99, steps=1, sample_rate=SR)
    with pytest.raises(TargetError, match="Did you mean: conv"):
        dream(chord, model=debug_model, layer="conv", steps=1, sample_rate=SR)
    with pytest.raises(TargetError, match="until"):
        dream(chord, model=debug_model, layer="conv1", until=0.5, sample_rate=SR)


def test_default_objective_is_the_inputs_top_class(debug_model, chord):
    result = dream(chord, model=debug_model, steps=2, sample_rate=SR)
    assert result.report["objective"] == "top-class"
    assert result.report["target"] == result.report["top_before"][0]["name"]


def test_weighted_targets(debug_model, chord):
    result = dream(chord, model=debug_model, target="flute:1,piano:0.5", steps=6,
                   sample_rate=SR)
    report = result.report
    assert [t["name"] for t in report["targets"]] == ["flute", "piano"]
    assert report["objective_after"] > report["objective_before"]
    assert report["confidence_before"] == min(t["confidence_before"] for t in report["targets"])


@pytest.mark.parametrize("domain", ["spectrogram", "waveform"])
def test_same_seed_same_output(debug_model, domain):
    kwargs = dict(model=debug_model, target="flute", steps=4, jitter=0.2, domain=domain)
    a = dream("noise:1s", seed=7, **kwargs)
    b = dream("noise:1s", seed=7, **kwargs)
    c = dream("noise:1s", seed=8, **kwargs)
    assert a.audio.tobytes() == b.audio.tobytes()
    assert a.gradient_audio.tobytes() == b.gradient_audio.tobytes()
    assert a.audio.tobytes() != c.audio.tobytes()


def test_dreaming_from_silence(debug_model):
    result = dream("silence:1s", model=debug_model, target="flute", steps=5,
                   domain="spectrogram")
    assert np.isfinite(result.audio).all()
    assert np.abs(result.audio).max() > 0  # something was dreamed out of nothing
    assert result.report["confidence_after"] > result.report["confidence_before"]
    with pytest.raises(AudioError, match="silent"):
        dream("silence:1s", model=debug_model, target="flute", steps=2, domain="waveform")
    with pytest.raises(AudioError, match=r"silent.*--domain spectrogram"):  # the default style
        dream("silence:1s", model=debug_model, target="flute", steps=2)


def test_octaves_and_snapshots(debug_model, chord):
    seen = []
    result = dream(chord, model=debug_model, target="flute", steps=4, octaves=2,
                   domain="spectrogram",
                   snapshot_every=2, sample_rate=SR,
                   on_snapshot=lambda step, audio: seen.append((step, audio.shape)))
    assert result.report["steps"] == 8
    # Snapshots are taken at full resolution (the last octave): steps 6 and 8 overall.
    assert [s for s, _ in seen] == [6, 8] and [s for s, _ in result.snapshots] == [6, 8]
    assert all(shape == chord.shape for _, shape in seen)
    assert result.report["confidence_after"] > result.report["confidence_before"]


@pytest.mark.parametrize("rule, flip", [("additive", False), ("filter", False),
                                        ("filter-add", False), ("filter-add", True),
                                        ("filter", True), ("target", False), ("target", True)])
def test_waveform_rules_end_to_end(debug_model, chord, rule, flip):
    target_sound = tone(1000, seconds=0.5).numpy() if rule == "target" else None
    result = dream(chord, model=debug_model, target="flute", domain="waveform", rule=rule,
                   flip=flip, target_sound=target_sound, steps=3, sample_rate=SR, limit=False)
    assert np.isfinite(result.audio).all()
    assert not np.allclose(result.audio, chord, atol=1e-5)
    assert result.report["rule"] == rule and result.report["flip"] == flip
    assert result.gradient.shape == chord.shape


def test_bad_settings(debug_model, chord):
    with pytest.raises(DreamsoundError, match="waveform domain"):
        dream(chord, model=debug_model, rule="filter", sample_rate=SR)
    with pytest.raises(DreamsoundError, match="target-sound"):
        dream(chord, model=debug_model, domain="waveform", rule="target", sample_rate=SR)
    with pytest.raises(DreamsoundError, match="--domain 'image' is not one of"):
        dream(chord, model=debug_model, domain="image", sample_rate=SR)
    with pytest.raises(DreamsoundError, match="octaves"):
        dream(chord, model=debug_model, domain="waveform", octaves=2, sample_rate=SR)
    with pytest.raises(TargetError, match="not both"):
        dream(chord, model=debug_model, target="flute", layer="conv1", sample_rate=SR)


def test_until_rendered_goes_on_from_a_rendering_that_fell_short(debug_model, chord):
    free = dream(chord, model=debug_model, target="flute", steps=30, sample_rate=SR)
    goal = free.report["confidence_before"] + 0.4 * (free.report["confidence_rendered"]
                                                     - free.report["confidence_before"])
    calls: list[int] = []

    class LosingFirstRender(SpectrogramDomain):
        def invert(self, log_mel, reference):
            calls.append(1)
            if len(calls) == 1:  # this rendering carries none of the dream: the input returns
                return torch.from_numpy(chord).to(log_mel.device)
            return super().invert(log_mel, reference)

    config = DreamConfig(steps=60, until=goal, until_rendered=True)
    domain = LosingFirstRender(debug_model, config, torch.from_numpy(chord), silent=False)
    objective = Objective(debug_model, targets=resolve_targets(debug_model, "flute"))
    distances: list[float] = []
    ascent = ascend(domain, objective, config, generator=torch.Generator().manual_seed(0),
                    hooks=Hooks(progress=lambda event: distances.append(event.rmse_db)))
    assert len(calls) >= 2
    # After the miss the dream restarted from the rendered sound (the input): its distance
    # fell back from many steps' to one step's.
    assert any(later < 0.5 * earlier for earlier, later in itertools.pairwise(distances))
    assert ascent.stopped == "until"
    assert domain.kept_render is not None and domain.kept_render[0] == ascent.steps


def test_distance_penalty_is_mse_db2(debug_model, chord):
    penalty = DistancePenalty(1.0, debug_model.front_end)
    a = debug_model.log_mel(torch.from_numpy(chord))
    b = a + torch.randn(a.shape, generator=torch.Generator().manual_seed(0)) * 0.1
    assert float(penalty(b, a)) == pytest.approx(
        metrics.mse_db2(b, a, front_end=debug_model.front_end), rel=1e-5)


def test_save_dream_writes_everything(debug_model, chord_wav, tmp_path):
    result = dream(chord_wav, model=debug_model, target="flute", steps=4, snapshot_every=2)
    saved = Dreamer(debug_model).save(result, tmp_path / "out" / "chord.dream-flute", plot=True)
    outputs = saved.report.outputs
    assert set(outputs) == {"audio", "gradient", "snapshots", "plot", "report"}
    for key in ("audio", "gradient", "plot", "report"):
        assert (tmp_path / "out" / outputs[key].split("/")[-1]).is_file()
    assert len(outputs["snapshots"]) == 2
    doc = json.loads((tmp_path / "out" / "chord.dream-flute.json").read_text())
    assert doc["outputs"] == outputs and doc["rendered_from"] == "file"
    written, rate = sf.read(outputs["audio"], dtype="float32")
    assert rate == SR and written.shape == result.audio.shape
    with open(outputs["plot"], "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    # The rendered confidence is that of the 16-bit file, re-analysed.
    assert doc["rendered_from"] == "file"
    assert doc["confidence_rendered"] == pytest.approx(result.report["confidence_rendered"],
                                                       abs=1e-4)
    assert doc == saved.report.to_json()
    # Saving judged the file into a new report; the dream's own report is unchanged.
    assert result.report.rendered_from == "memory" and result.report.outputs == {}
    assert not list((tmp_path / "out").glob(".*tmp*"))  # atomic: no temporary files left


def test_save_dream_never_overwrites_the_input(debug_model, chord_wav):
    before = chord_wav.read_bytes()
    result = dream(chord_wav, model=debug_model, target="flute", steps=1)
    with pytest.raises(OutputError, match="input"):
        Dreamer(debug_model).save(result, chord_wav.with_suffix(""))
    assert chord_wav.read_bytes() == before


def test_public_api_is_callable_after_submodule_import(debug_model):
    import dreamsound
    import dreamsound.api
    import dreamsound.sonification

    # dreamsound.dream stays the function, as the README's `dreamsound.dream(...)` promises.
    result = dreamsound.dream("noise:1s", model=debug_model, target="violin", steps=1)
    assert isinstance(result, DreamResult)
    assert dreamsound.sonify("noise:1s", model=debug_model, target="violin").audio.size == 16000


def test_a_dreamer_classifies_then_dreams_on_the_default_model():
    # The instrument CNN caches folded weights on its first call; classifying first must not
    # leave inference tensors that a later dream cannot differentiate through.
    from pathlib import Path

    loop = Path(__file__).resolve().parents[1] / "examples" / "loop.wav"
    dreamer = Dreamer("instrument", DreamConfig(steps=1, gl_iterations=2, fit_iterations=0))
    assert dreamer.classify(loop).top(1)[0][1]
    assert dreamer.dream(loop, target="violin").report.steps == 1
