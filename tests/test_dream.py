"""The dream engine: inputs, targets, update rules, step control, determinism, outputs."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from dreamsound import metrics
from dreamsound.dream import (
    DreamResult,
    DreamSettings,
    Objective,
    StftGeometry,
    _Engine,
    dream,
    dream_name,
    generate_start,
    hard_cut_mask,
    limit_peaks,
    masked_resynthesis,
    normalize_gradient,
    output_stem,
    parse_start,
    parse_target_spec,
    resolve_targets,
    save_dream,
    smooth_gradient,
    waveform_update,
)
from dreamsound.errors import AudioError, DreamsoundError, OutputError, TargetError

SR = 16000


@pytest.fixture
def chord(rng) -> np.ndarray:
    """2 s of 440 + 660 Hz with a little noise, 16 kHz."""
    t = np.arange(2 * SR) / SR
    x = 0.2 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 660 * t)
    return (x + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture
def chord_wav(tmp_path, chord):
    path = tmp_path / "chord.wav"
    sf.write(path, chord, SR, subtype="FLOAT")
    return path


def tone(freq: float, seconds: float = 1.0, amp: float = 0.3) -> torch.Tensor:
    t = torch.arange(round(seconds * SR), dtype=torch.float64) / SR
    return (amp * torch.sin(2 * math.pi * freq * t)).float()


def amplitude_at(signal: torch.Tensor, freq: float) -> float:
    """Hann-windowed whole-signal FFT magnitude at ``freq`` (a sine's level, up to a constant)."""
    s = signal.double().numpy()
    spectrum = np.abs(np.fft.rfft(s * np.hanning(s.size)))
    return float(spectrum[np.argmin(np.abs(np.fft.rfftfreq(s.size, 1 / SR) - freq))])


def band_fraction(signal: torch.Tensor, low: float, high: float) -> float:
    """Share of a signal's energy between ``low`` and ``high`` Hz (whole-signal FFT)."""
    s = signal.double().numpy()
    power = np.abs(np.fft.rfft(s * np.hanning(s.size))) ** 2
    freqs = np.fft.rfftfreq(s.size, 1 / SR)
    return float(power[(freqs >= low) & (freqs <= high)].sum() / power.sum())


def db(ratio: float) -> float:
    return 20 * math.log10(max(ratio, 1e-30))


# -- inputs -------------------------------------------------------------------------------------
def test_generated_starts():
    assert parse_start("noise:3s") == ("noise", 3.0, None)
    assert parse_start("silence:500ms") == ("silence", 0.5, None)
    assert parse_start("sine:440:2s") == ("sine", 2.0, 440.0)
    assert parse_start("loop.wav") is None
    noise = generate_start("noise:1s", sample_rate=SR, seed=3)
    assert noise.shape == (SR,) and noise.dtype == np.float32
    assert np.array_equal(noise, generate_start("noise:1s", sample_rate=SR, seed=3))
    assert not np.array_equal(noise, generate_start("noise:1s", sample_rate=SR, seed=4))
    assert not generate_start("silence:0.25s", sample_rate=SR).any()
    sine = generate_start("sine:1000:1s", sample_rate=SR)
    assert amplitude_at(torch.from_numpy(sine), 1000) > 100 * amplitude_at(
        torch.from_numpy(sine), 3000)
    with pytest.raises(AudioError, match="Nyquist"):
        generate_start("sine:9000:1s", sample_rate=SR)


# -- targets ------------------------------------------------------------------------------------
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


# -- STFT re-phasing and the waveform rules -------------------------------------------------------
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-6), (torch.float64, 1e-13)])
def test_all_ones_mask_reproduces_input_exactly(rng, dtype, tol):
    geometry = StftGeometry(512, 400, 160, dtype=dtype)
    x = torch.from_numpy(rng.standard_normal(12345) * 0.3).to(dtype)
    ones = torch.ones(geometry.analyse(x).shape, dtype=dtype)
    rebuilt = masked_resynthesis(geometry, x, ones)
    assert rebuilt.shape == x.shape
    assert float((rebuilt - x).abs().max()) < tol


def test_hard_cut_mask():
    magnitude = torch.tensor([[0.0, 0.05, 0.1, 0.5, 1.0],
                              [0.0, 0.004, 0.02, 0.05, 0.1],  # a quiet frame: its own maximum
                              [0.0, 0.0, 0.0, 0.0, 0.0]])
    assert hard_cut_mask(magnitude, 0.1).tolist() == [[0, 0, 1, 1, 1], [0, 0, 1, 1, 1],
                                                      [0, 0, 0, 0, 0]]
    assert hard_cut_mask(torch.zeros(2, 3), 0.1).sum() == 0


def test_normalize_gradient():
    g = torch.tensor([1.0, -3.0, 2.0])
    assert torch.allclose(normalize_gradient(g, "mean").abs().mean(), torch.tensor(1.0))
    assert torch.allclose(normalize_gradient(g, "max").abs().max(), torch.tensor(1.0))
    with pytest.raises(DreamsoundError, match="zero everywhere"):
        normalize_gradient(torch.zeros(4), "mean")
    with pytest.raises(DreamsoundError, match="NaN"):
        normalize_gradient(torch.tensor([1.0, float("nan")]), "mean")


def test_smooth_gradient():
    checker = torch.ones(8, 6)
    checker[::2] *= -1
    checker[:, ::2] *= -1
    smoothed = smooth_gradient(checker, 1)
    # A frame-to-frame / band-to-band checkerboard (unrealisable as sound) is removed inside ...
    assert float(smoothed[1:-1, 1:-1].abs().max()) < 1e-6
    # ... while a constant or a slow ramp is kept.
    assert torch.allclose(smooth_gradient(torch.full((5, 4), 3.0), 2), torch.full((5, 4), 3.0))
    ramp = torch.arange(10.0)[:, None].expand(10, 4)
    assert torch.allclose(smooth_gradient(ramp, 1)[1:-1], ramp[1:-1])
    assert torch.equal(smooth_gradient(checker, 0), checker)


def test_limit_peaks_only_touches_the_peaks():
    t = np.arange(SR) / SR
    quiet = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    loud = quiet.copy()
    loud[8000:8040] = 1.5  # one overshoot
    limited = limit_peaks(loud, SR)
    assert np.abs(limited).max() <= 10 ** (-1 / 20) + 1e-7
    # Away from the peak (beyond the 10 ms window) the level is untouched.
    assert np.array_equal(limited[:7500], loud[:7500]) and np.array_equal(limited[8600:],
                                                                          loud[8600:])
    assert np.array_equal(limit_peaks(quiet, SR), quiet)


GEOMETRY = StftGeometry(512, 400, 160)


def test_additive_rule():
    x, g = tone(440), tone(1000)
    out = waveform_update(x, g, rule="additive", step_size=0.1, level=0.5, geometry=GEOMETRY)
    assert torch.allclose(out, x + 0.05 * g)


def test_filter_rule_keeps_only_the_gradients_bins():
    signal = tone(500) + tone(3000)
    gradient = tone(500, amp=1.0)  # the model "wants" only 500 Hz
    out = waveform_update(signal, gradient, rule="filter", step_size=0.1, level=1.0,
                          geometry=GEOMETRY)
    # 500 Hz passes untouched (the signal's own phase kept), 3000 Hz is gone.
    assert amplitude_at(out, 500) == pytest.approx(amplitude_at(signal, 500), rel=0.01)
    assert db(amplitude_at(out, 3000) / amplitude_at(signal, 3000)) < -100
    # No energy where the mask is zero (re-analysed; only window leakage at the mask's edges).
    mask = hard_cut_mask(GEOMETRY.analyse(gradient).abs(), 0.1)
    energy = GEOMETRY.analyse(out).abs().square()
    assert float((energy * (1 - mask)).sum() / energy.sum()) < 0.005


def test_filter_add_rule_adds_the_filtered_signal():
    signal = tone(500) + tone(3000)
    gradient = tone(500, amp=1.0)
    out = waveform_update(signal, gradient, rule="filter-add", step_size=0.5, level=1.0,
                          geometry=GEOMETRY)
    change = out - signal
    assert amplitude_at(change, 500) == pytest.approx(0.5 * amplitude_at(signal, 500), rel=0.01)
    assert db(amplitude_at(change, 3000) / amplitude_at(signal, 3000)) < -100
    assert amplitude_at(out, 3000) == pytest.approx(amplitude_at(signal, 3000), rel=1e-3)


def test_target_rule_shapes_the_gradient_by_the_second_sound(rng):
    signal = tone(500)
    gradient = torch.from_numpy(rng.standard_normal(SR)).float()  # broadband
    target = tone(2000)
    out = waveform_update(signal, gradient, rule="target", step_size=0.1, level=0.2,
                          geometry=GEOMETRY, target_sound=target)
    change = out - signal
    # The noise gradient now lives only around 2 kHz, the target's footprint.
    assert band_fraction(change, 1700, 2300) > 0.995
    assert amplitude_at(change, 2000) > 30 * amplitude_at(change, 5000)


def test_flip_filter_takes_the_mask_from_the_signal(rng):
    signal = tone(500)
    gradient = torch.from_numpy(rng.standard_normal(SR)).float()
    out = waveform_update(signal, gradient, rule="filter", step_size=0.1, level=1.0,
                          geometry=GEOMETRY, flip=True)
    # The result is the gradient, restricted to the signal's footprint, at the signal's level.
    assert band_fraction(out, 200, 800) > 0.995
    assert float(out.square().mean().sqrt()) == pytest.approx(
        float(signal.square().mean().sqrt()), rel=1e-3)
    # Unflipped, the same inputs give the signal (filtered by the broadband gradient's mask)
    # instead: the flip swapped which sound is heard and which one shapes it.
    plain = waveform_update(signal, gradient, rule="filter", step_size=0.1, level=1.0,
                            geometry=GEOMETRY)

    def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
        return abs(float(np.corrcoef(a.double().numpy(), b.double().numpy())[0, 1]))

    assert correlation(plain, signal) > 0.9
    assert correlation(out, signal) < 0.5


def test_flip_filter_add_adds_the_gradient_where_the_signal_is(rng):
    signal = tone(500)
    gradient = torch.from_numpy(rng.standard_normal(SR)).float()
    out = waveform_update(signal, gradient, rule="filter-add", step_size=0.1, level=0.2,
                          geometry=GEOMETRY, flip=True)
    change = out - signal
    assert float(change.abs().max()) > 0
    assert band_fraction(change, 200, 800) > 0.995


def test_flip_target_adds_the_second_sound_where_the_gradient_is():
    signal = tone(500)
    target = tone(1000) + tone(2000)
    gradient = tone(2000, amp=1.0)  # the model wants 2 kHz only
    out = waveform_update(signal, gradient, rule="target", step_size=0.5, level=0.2,
                          geometry=GEOMETRY, target_sound=target, flip=True)
    change = out - signal
    assert amplitude_at(change, 2000) == pytest.approx(0.5 * amplitude_at(target, 2000),
                                                       rel=0.01)
    assert db(amplitude_at(change, 1000) / amplitude_at(target, 1000)) < -100


def test_flip_is_refused_for_additive():
    with pytest.raises(DreamsoundError, match="--flip"):
        waveform_update(tone(500), tone(500), rule="additive", step_size=0.1, level=1.0,
                        geometry=GEOMETRY, flip=True)


# -- the engine on the debug model ----------------------------------------------------------------
def test_spectrogram_dream_raises_the_target(debug_model, chord):
    steps = []
    result = dream(chord, model=debug_model, target="flute", steps=8, sample_rate=SR,
                   progress=lambda step, total, info: steps.append((step, total, info)))
    report = result.report
    assert isinstance(result, DreamResult)
    assert report["confidence_after"] > report["confidence_before"]
    assert report["objective_after"] > report["objective_before"]
    assert report["steps"] == 8 and [s[0] for s in steps] == list(range(1, 9))
    assert all(total == 8 for _, total, _ in steps)
    assert {"objective", "confidence", "rmse_db", "seconds"} <= set(steps[0][2])
    # Distances come from dreamsound.metrics, on the spectrograms the result carries.
    sp = result.spectrograms
    assert report["rmse_db"] == pytest.approx(
        metrics.rmse_db(sp["original"], sp["dreamed"], log_offset=1e-3))
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
                   sample_rate=SR)
    change = metrics.mel_db(result.spectrograms["dreamed"], log_offset=1e-3) - metrics.mel_db(
        result.spectrograms["original"], log_offset=1e-3)
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


def test_until_rendered_goes_on_from_a_rendering_that_fell_short(debug_model, chord,
                                                                  monkeypatch):
    free = dream(chord, model=debug_model, target="flute", steps=30, sample_rate=SR)
    goal = free.report["confidence_before"] + 0.4 * (free.report["confidence_rendered"]
                                                     - free.report["confidence_before"])
    real_render = _Engine.render
    calls: list[int] = []

    def render_losing_the_first_dream(self, log_mel, reference, n):
        calls.append(n)
        if len(calls) == 1:  # this rendering carries none of the dream: the input comes back
            return torch.from_numpy(chord).to(log_mel.device)
        return real_render(self, log_mel, reference, n)

    monkeypatch.setattr(_Engine, "render", render_losing_the_first_dream)
    distances: list[float] = []
    result = dream(chord, model=debug_model, target="flute", steps=60, until=goal,
                   until_rendered=True, sample_rate=SR,
                   progress=lambda _step, _total, info: distances.append(info["rmse_db"]))
    assert len(calls) >= 2
    # After the miss the dream restarted from the rendered sound (the input): its distance
    # fell back from many steps' to one step's.
    assert any(later < 0.5 * earlier for earlier, later in itertools.pairwise(distances))
    assert result.report["stopped"] == "until"
    assert result.report["confidence_rendered"] >= goal


@pytest.mark.parametrize("domain", ["spectrogram", "waveform"])
def test_max_rmse_db_bounds_the_distance(debug_model, chord, domain):
    result = dream(chord, model=debug_model, target="flute", steps=15, domain=domain,
                   max_rmse_db=1.5, step_size=1.0 if domain == "spectrogram" else 0.3,
                   sample_rate=SR)
    assert result.report["rmse_db"] <= 1.5 + 1e-6
    assert result.report["rmse_db"] > 1.0  # it did move, up to the bound


def test_distance_penalty_is_mse_db2(debug_model, chord):
    engine = _Engine(debug_model, Objective(debug_model, targets=resolve_targets(
        debug_model, "flute")), DreamSettings())
    a = debug_model.log_mel(torch.from_numpy(chord))
    b = a + torch.randn(a.shape, generator=torch.Generator().manual_seed(0)) * 0.1
    assert float(engine._distance_penalty(b, a)) == pytest.approx(
        metrics.mse_db2(b, a, log_offset=1e-3), rel=1e-5)


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
    result = dream("silence:1s", model=debug_model, target="flute", steps=5)
    assert np.isfinite(result.audio).all()
    assert np.abs(result.audio).max() > 0  # something was dreamed out of nothing
    assert result.report["confidence_after"] > result.report["confidence_before"]
    with pytest.raises(AudioError, match="silent"):
        dream("silence:1s", model=debug_model, target="flute", steps=2, domain="waveform")


def test_octaves_and_snapshots(debug_model, chord):
    seen = []
    result = dream(chord, model=debug_model, target="flute", steps=4, octaves=2,
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
    with pytest.raises(DreamsoundError, match="unknown domain"):
        dream(chord, model=debug_model, domain="image", sample_rate=SR)
    with pytest.raises(DreamsoundError, match="octaves"):
        dream(chord, model=debug_model, domain="waveform", octaves=2, sample_rate=SR)
    with pytest.raises(TargetError, match="not both"):
        dream(chord, model=debug_model, target="flute", layer="conv1", sample_rate=SR)


# -- outputs ------------------------------------------------------------------------------------
def test_names_and_stems(tmp_path):
    report = {"layer": None, "channel": None, "domain": "spectrogram", "rule": None,
              "flip": False, "targets": [{"name": "Violin, fiddle"}]}
    assert dream_name(report) == "dream-violin"
    assert dream_name(report, query="violin:1,flute:0.5") == "dream-violin+flute"
    layer = dict(report, layer="layer10/pointwise", channel=5, domain="waveform",
                 rule="filter", flip=True)
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


def test_save_dream_writes_everything(debug_model, chord_wav, tmp_path):
    result = dream(chord_wav, model=debug_model, target="flute", steps=4, snapshot_every=2)
    outputs = save_dream(result, tmp_path / "out" / "chord.dream-flute", plot=True,
                         model=debug_model)
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
    assert doc["confidence_rendered"] == pytest.approx(result.report["confidence_rendered"])
    assert not list((tmp_path / "out").glob(".*tmp*"))  # atomic: no temporary files left


def test_save_dream_never_overwrites_the_input(debug_model, chord_wav):
    before = chord_wav.read_bytes()
    result = dream(chord_wav, model=debug_model, target="flute", steps=1)
    with pytest.raises(OutputError, match="input"):
        save_dream(result, chord_wav.with_suffix(""))
    assert chord_wav.read_bytes() == before


def test_public_api_is_callable_after_submodule_import(debug_model):
    import dreamsound
    import dreamsound.dream  # makes the package attribute the module ...
    import dreamsound.sonify

    # ... which still dreams when called, as the README's `dreamsound.dream(...)` promises.
    result = dreamsound.dream("noise:1s", model=debug_model, target="violin", steps=1)
    assert isinstance(result, DreamResult)
    assert dreamsound.sonify("noise:1s", model=debug_model, target="violin").audio.size == 16000


def test_mean_normalisation_bounds_every_element():
    # One bin holding nearly all of the gradient must not move by hundreds of dB in one step
    # (that overflowed exp() on rendering: NaN audio).
    import torch

    from dreamsound.dream import MAX_ELEMENT_STEP, normalize_gradient

    gradient = torch.full((50, 20), 1e-6)
    gradient[10, 5] = 1.0
    step = normalize_gradient(gradient, "mean")
    assert float(step.abs().max()) == MAX_ELEMENT_STEP
    assert torch.all(step > 0)
