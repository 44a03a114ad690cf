"""Robust dreams: random changes of a sound, ensembles at different rates, sound domains."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dreamsound.api import Dreamer
from dreamsound.config import DreamConfig
from dreamsound.engine.objectives import Member, SoundObjective, resolve_targets
from dreamsound.engine.objectives import Objective as LogMelObjective
from dreamsound.engine.transforms import SOUND_CHANGES, RandomChanges
from dreamsound.errors import ConfigError
from dreamsound.models.base import AudioClassifier
from dreamsound.models.debug import FRONT_END, DebugNetwork
from dreamsound.spectral import FrontEndConfig
from dreamsound.spectral.resample import resample_fft
from tests.signals import SR, amplitude_at, tone


@pytest.mark.parametrize("name", sorted(SOUND_CHANGES))
def test_every_change_is_differentiable_and_seeded(name):
    change = SOUND_CHANGES[name]()
    audio = tone(440, 0.5).requires_grad_(True)
    out = change(audio, SR, torch.Generator().manual_seed(3))
    assert out.shape == audio.shape and torch.isfinite(out).all()
    out.square().sum().backward()
    assert torch.isfinite(audio.grad).all() and audio.grad.abs().sum() > 0
    again = change(audio.detach(), SR, torch.Generator().manual_seed(3))
    assert torch.equal(out.detach(), again)  # same seed, same change


def test_random_changes_draw_k_copies_reproducibly():
    changes = RandomChanges.named(list(SOUND_CHANGES), samples=3)
    audio = tone(330, 0.5)
    first = changes.draw(audio, SR, torch.Generator().manual_seed(0))
    second = changes.draw(audio, SR, torch.Generator().manual_seed(0))
    assert len(first) == 3 and all(torch.equal(a, b) for a, b in zip(first, second))
    assert not all(torch.equal(c, audio) for c in first)


def test_resampling_keeps_a_tone_and_its_gradient():
    x = tone(1000, 1.0).requires_grad_(True)
    y = resample_fft(x, SR, 22050)
    assert y.shape == (22050,)
    assert amplitude_at(y.detach()[:SR], 1000 * SR / 22050) > 0  # the same pitch, new rate
    y.sum().backward()
    assert torch.isfinite(x.grad).all()


def _model_at(rate: int, name: str) -> AudioClassifier:
    from dreamsound.data.irmas import IRMAS_CODES, IRMAS_NAMES

    fields = {**FRONT_END.to_dict(), "sample_rate": rate}
    return AudioClassifier(name, FrontEndConfig(**fields), DebugNetwork(11, seed=1),
                           IRMAS_NAMES, IRMAS_CODES).eval().requires_grad_(False)


def test_an_ensemble_at_two_rates_hears_one_sound(debug_model, chord):
    other = _model_at(22050, "debug-22k")
    members = [Member(LogMelObjective(m, targets=resolve_targets(m, "flute")))
               for m in (debug_model, other)]
    objective = SoundObjective(members, SR, score="log-prob")
    audio = torch.from_numpy(chord).requires_grad_(True)
    value, logits = objective(audio)
    (gradient,) = torch.autograd.grad(value, audio)
    assert torch.isfinite(gradient).all() and gradient.abs().sum() > 0
    assert len(logits) == 2 and objective.confidence(logits) == min(
        objective.member_confidences(audio))
    # One step along the gradient raises every member's confidence.
    before = objective.member_confidences(audio)
    after = objective.member_confidences(audio.detach() + 1e-3 * gradient.sign())
    assert all(a > b for a, b in zip(after, before))


@pytest.mark.parametrize("softmax", [False, True])
def test_a_convinced_model_still_has_a_log_prob_gradient(debug_model, chord, softmax):
    # A target logit of 40 puts its sigmoid (or softmax) at exactly 1.0 in float32, where
    # log(score) has no gradient and the dream stopped with "the gradient is zero everywhere".
    model = _model_at(SR, "convinced")
    if softmax:
        model.scores_from_logits = lambda logits: torch.softmax(logits, dim=-1)
        model.log_scores_from_logits = lambda logits: torch.log_softmax(logits, dim=-1)
    flute = model.resolve_class("flute")
    plain = model.logits_from_log_mel
    model.logits_from_log_mel = lambda log_mel: plain(log_mel) + 40.0 * torch.nn.functional.one_hot(
        torch.tensor(flute), 11)
    objective = SoundObjective([Member(LogMelObjective(model, targets=resolve_targets(
        model, "flute")))], SR, score="log-prob")
    audio = torch.from_numpy(chord).requires_grad_(True)
    value, logits = objective(audio)
    assert float(model.scores_from_logits(logits[0].detach())[:, flute].min()) == 1.0
    (gradient,) = torch.autograd.grad(value, audio)
    assert torch.isfinite(gradient).all() and gradient.abs().max() > 0


@pytest.mark.parametrize("domain", ["envelope", "samples"])
def test_robust_dreams_on_an_ensemble(debug_model, chord, domain):
    other = _model_at(22050, "debug-22k")
    config = DreamConfig(style="robust", domain=domain, steps=6, changes=2, seed=4)
    dreamer = Dreamer([debug_model, (other, 0.5)], config)
    result = dreamer.dream(chord, target="flute", sample_rate=SR)
    report = result.report
    assert [e["model"] for e in report.ensemble] == ["debug", "debug-22k"]
    assert report.ensemble[1]["weight"] == 0.5
    assert all(e["confidence_rendered"] > e["confidence_before"] for e in report.ensemble)
    assert result.audio.shape == chord.shape and np.isfinite(result.audio).all()
    assert result.gradient_audio.shape == chord.shape
    again = Dreamer([debug_model, (other, 0.5)], config).dream(chord, target="flute",
                                                               sample_rate=SR)
    assert again.audio.tobytes() == result.audio.tobytes()  # the changes are seeded


def test_envelope_keeps_the_fine_structure_and_the_bound(debug_model, chord):
    config = DreamConfig(style="robust", steps=10, step_size=2.0, max_rmse_db=3.0, changes=0)
    result = Dreamer(debug_model, config).dream(chord, target="flute", sample_rate=SR)
    assert result.report.rmse_db <= 3.0 + 1e-3
    dreamed = torch.from_numpy(result.audio)
    # An envelope changes levels, not pitches: the chord's partials are still its peaks.
    for hz in (440, 660):
        assert amplitude_at(dreamed, hz) > 10 * amplitude_at(dreamed, hz + 37)


def test_style_fills_in_what_was_not_given():
    default = DreamConfig()
    assert (default.style, default.domain, default.changes, default.score,
            default.max_rmse_db) == ("robust", "envelope", 2, "log-prob", 6.0)
    exact = DreamConfig(style="exact")
    assert (exact.domain, exact.changes, exact.score, exact.max_rmse_db) == (
        "spectrogram", 0, "logit", None)
    # An exact domain without a style asks for the exact engine; a sound domain for robust.
    for domain in ("spectrogram", "waveform"):
        assert DreamConfig(domain=domain).to_dict() == DreamConfig(style="exact",
                                                                   domain=domain).to_dict()
    assert DreamConfig(domain="samples").style == "robust"
    assert DreamConfig(max_rmse_db=2.0).max_rmse_db == 2.0  # a given knob stays as given
    with pytest.raises(ConfigError, match="the spectrogram domain belongs to --style exact"):
        DreamConfig(style="robust", domain="spectrogram")
    with pytest.raises(ConfigError, match="--changes needs a sound domain"):
        DreamConfig(style="robust", domain="waveform", changes=2)
    robust = DreamConfig(style="robust", changes=4)
    assert DreamConfig(style="robust", domain="samples", changes=0).changes == 0
    with pytest.raises(ConfigError, match="--changes needs a sound domain"):
        DreamConfig(domain="spectrogram", changes=2)
    with pytest.raises(ConfigError, match="several models"):
        Dreamer(["debug", _model_at(22050, "debug-22k")], DreamConfig(style="exact"))
    assert DreamConfig.from_json(robust.to_dict()) == robust
    # Reports store the step size in use; read back, it is the same dream.
    assert DreamConfig.from_json(robust.to_json()).to_json() == robust.to_json()


def test_the_developer_docs_change_is_one_class(tmp_path):
    import re
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[2] / "docs" / "developers.md").read_text()
    code = re.search(r"```python\n(.*?)```", docs, re.S).group(1)
    assert len(code.strip().splitlines()) <= 20
    namespace: dict = {}
    try:
        exec(compile(code, "developers.md", "exec"), namespace)
        assert SOUND_CHANGES["tremolo"] is namespace["Tremolo"]
        audio = tone(440, 0.5).requires_grad_(True)
        out = SOUND_CHANGES["tremolo"]()(audio, SR, torch.Generator().manual_seed(0))
        out.sum().backward()
        assert audio.grad.abs().sum() > 0 and not torch.equal(out.detach(), audio.detach())
    finally:
        SOUND_CHANGES.pop("tremolo", None)


def test_robust_progress_shows_the_confidence_in_the_unchanged_sound(debug_model, chord):
    # The copies a robust step hears are changed at random, so their logits are not the
    # sound's; progress still shows the sound's own confidence (first and last step at least).
    events = []
    config = DreamConfig(steps=4, changes=2, seed=1)
    result = Dreamer(debug_model, config).dream(chord, target="flute", sample_rate=SR,
                                                progress=events.append)
    shown = [e.confidence for e in events if e.stage == "dream"]
    assert len(shown) == 4 and shown[0] is not None and shown[-1] is not None
    assert shown[0] == pytest.approx(result.report.confidence_before, abs=1e-6)


def test_fast_fft_sizes_and_the_reverb_is_a_linear_convolution():
    from dreamsound.engine.transforms import Reverb, fast_fft_size

    assert [fast_fft_size(n) for n in (1, 7, 97, 1000, 66151)] == [1, 8, 100, 1000, 67500]
    audio = torch.zeros(1000)
    audio[10] = 1.0  # an impulse: the wet part is the room's response itself, from sample 10
    out = Reverb(rt60_s=(0.005, 0.005), wet=(1.0, 1.0))(audio, SR, torch.Generator().manual_seed(0))
    assert out[:10].abs().max() < 1e-6 and out[10:90].abs().max() > 0.1
    assert out[10 + 80:].abs().max() < 1e-6  # 80 samples of room, then nothing wraps around


@pytest.mark.parametrize("power", [1.0, 0.5, 3.0])
def test_the_interpolated_pull_back_meets_the_bound_in_few_steps(power):
    from dreamsound.engine.constraints import (
        PULL_BACK_EVALUATIONS,
        PULL_BACK_TOLERANCE,
        pull_back_interpolated,
    )

    calls = []

    def distance(x):  # 10 dB at scale 1, growing as scale ** power
        calls.append(1)
        return 10.0 * float(x.abs().max()) ** power

    original, updated = torch.zeros(4), torch.ones(4)
    result, value = pull_back_interpolated(original, updated, 6.0, distance, at_one=10.0)
    assert value == pytest.approx(distance(result)) and value <= 6.0
    assert value >= 6.0 * (1 - PULL_BACK_TOLERANCE) or len(calls) > PULL_BACK_EVALUATIONS
    assert len(calls) - 1 <= (1 if power == 1.0 else PULL_BACK_EVALUATIONS)
    assert value > 5.9  # close to the bound even when the distance is far from linear


@pytest.mark.parametrize("n", [1, 11, 97, 4096, 66151, 176400, 264600])
def test_speed_sizes_are_fast_and_near_the_factor(n):
    from dreamsound.engine.transforms import speed_sizes

    def seven_smooth(size: int) -> bool:
        for prime in (2, 3, 5, 7):
            while size % prime == 0:
                size //= prime
        return size == 1

    for cents in (-50.0, -17.3, 0.0, 8.9, 50.0):
        factor = 2.0 ** (cents / 1200.0)
        padded, out = speed_sizes(n, factor)
        assert seven_smooth(padded) and seven_smooth(out)
        assert n <= padded <= max(n + 1, 1.05 * n)
        if n >= 20000:  # shorter sounds have too few such sizes to come near every factor
            assert abs(1200.0 * math.log2(padded / out / factor)) < 7.0


def test_speed_moves_a_tone_by_its_factor():
    from dreamsound.engine.transforms import Speed

    rate, seconds = 16000, 4.0
    t = torch.arange(int(rate * seconds), dtype=torch.float64) / rate
    tone = torch.sin(2 * math.pi * 1000.0 * t)
    for cents in (-37.0, 23.0):
        factor = 2.0 ** (cents / 1200.0)
        played = Speed.at_factor(tone, factor)
        assert played.shape == tone.shape
        # The peak of the first 3 s (the tone fills them either way), 1/3 Hz bins (0.6 cents).
        spectrum = torch.fft.rfft(played[: 3 * rate] * torch.hann_window(3 * rate, dtype=t.dtype))
        peak_hz = float(torch.argmax(spectrum.abs())) / 3.0
        assert abs(1200.0 * math.log2(peak_hz / (1000.0 * factor))) < 7.0 + 0.6


@pytest.mark.parametrize("weight", [0, -1.0, float("nan"), "heavy"])
def test_an_ensemble_member_needs_a_positive_weight(debug_model, weight):
    with pytest.raises(ConfigError, match="must be a number > 0"):
        Dreamer([debug_model, (_model_at(22050, "debug-22k"), weight)])


def test_an_ensemble_names_each_model_once(debug_model):
    with pytest.raises(ConfigError, match="in the ensemble twice"):
        Dreamer(["debug", ("debug", 0.5)])
    with pytest.raises(ConfigError, match="in the ensemble twice"):
        Dreamer([debug_model, debug_model])
    # Two models of one name with their own weights (two training seeds) are two members.
    twins = Dreamer([_model_at(16000, "twin"), (_model_at(22050, "twin"), 0.5)])
    assert twins.model_weights == [1.0, 0.5]


def test_each_judge_comes_once(debug_model):
    with pytest.raises(ConfigError, match="a judge twice"):
        Dreamer(debug_model, judges=["instrument", "instrument"])
