"""Parameterisations of a *sound*, heard by every model of a dream (robust dreams).

The exact domains (:mod:`dreamsound.engine.domains`) change one model's own input. These change
a waveform at the dream's rate that any number of models hear, each through its own resampling
and front-end (:class:`~dreamsound.engine.objectives.SoundObjective`), so ensembles and random
changes of the sound apply. Their view is the sound itself.

``samples`` (:class:`SamplesDomain`)
    The samples, moved additively along the normalised gradient (the waveform domain's
    ``additive`` rule), within ``max_rmse_db`` of the original.
``envelope`` (:class:`EnvelopeDomain`)
    A smooth gain over time and frequency applied to the original's own STFT: 64
    log-spaced bands, control points every 0.05 s, interpolated to every bin and frame. The
    original's fine structure (harmonics, phase, transients) stays; what changes is the
    spectral envelope and its evolution — an audible, EQ-like change rather than a texture of
    per-bin perturbations, which is what makes other models hear it too.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from dreamsound import metrics
from dreamsound.config import DreamConfig
from dreamsound.engine import constraints
from dreamsound.engine.domains import LEVEL_FLOOR, Domain
from dreamsound.engine.rules import StftGeometry, rms
from dreamsound.engine.transforms import normalize_gradient
from dreamsound.errors import DreamsoundError
from dreamsound.models.base import AudioClassifier

#: Envelope bands: log-spaced centres from this frequency (Hz) up to 0.95 x Nyquist.
ENVELOPE_LOW_HZ = 60.0
#: 64 bands every 0.05 s, not 24 every 0.1 s: YAMNet's robust dreams (41 wrong-class dreams,
#: K = 2, 6 dB) then convinced YAMNet itself (>= 0.5 on the written audio) in 34 dreams instead
#: of 19, and moved the other models as often (20 / 19 / 26 against 19 / 21 / 23); 128 bands
#: or 0.025 s did no better (docs/transfer.md).
ENVELOPE_BANDS = 64
#: Seconds between the envelope's control points in time.
ENVELOPE_HOP_S = 0.05
#: Largest envelope gain either way (dB): beyond it a band is a different sound, not the same one.
ENVELOPE_MAX_DB = 24.0
#: The envelope's STFT (at the dream's rate): window and hop, seconds.
ENVELOPE_WINDOW_S = 0.046
ENVELOPE_STFT_HOP_S = 0.0116


class SoundDomain(Domain):
    """Base of the sound parameterisations: the view is the sound ``[n]`` at the primary
    model's rate, rolled by whole samples for jitter; distances are on the primary model."""

    def __init__(self, model: AudioClassifier, config: DreamConfig, wave: torch.Tensor):
        super().__init__(model, config, wave)
        self.jitter_limit = round(config.jitter * model.sample_rate)

    def sound(self, param: torch.Tensor) -> torch.Tensor:
        """The sound ``[n]`` a parameter stands for (differentiable)."""
        raise NotImplementedError

    def view(self, param: torch.Tensor, shift: int) -> torch.Tensor:
        audio = self.sound(param)
        return torch.roll(audio, shift) if shift else audio

    def clean_view(self, param: torch.Tensor) -> torch.Tensor:
        return self.sound(param.detach())

    def distance_terms(self, param: torch.Tensor, seen: torch.Tensor,
                       shift: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.log_mel(self.sound(param)), self.original

    def distance(self, param: torch.Tensor) -> float:
        """rmse_db of the parameter's sound from the original, on the primary model."""
        with torch.no_grad():
            return self.rmse(self.model.log_mel(self.sound(param)), self.original)

    def snapshot(self, param: torch.Tensor, last_stage: bool) -> torch.Tensor | None:
        with torch.no_grad():
            return self.sound(param.detach())

    def gradient_sound(self, gradient: torch.Tensor) -> torch.Tensor:
        """The gradient of the objective as sound ``[n]`` (not yet peak-normalised)."""
        raise NotImplementedError

    def finish(self, param: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        with torch.no_grad():
            audio = self.sound(param.detach())
            return self.model.log_mel(audio), audio

    def render(self, dreamed_log_mel: torch.Tensor, dreamed_wave: torch.Tensor | None,
               steps_done: int) -> torch.Tensor:
        assert dreamed_wave is not None
        return dreamed_wave


class SamplesDomain(SoundDomain):
    """The samples themselves, moved by ``step_size`` x the input's RMS along the normalised
    gradient each step; ``max_rmse_db`` pulls a step back by bisection."""

    def __init__(self, model: AudioClassifier, config: DreamConfig, wave: torch.Tensor):
        super().__init__(model, config, wave)
        self.level = max(float(rms(wave)), LEVEL_FLOOR)

    def begin_stage(self, stage: int) -> torch.Tensor:
        return self.wave.clone()

    def sound(self, param: torch.Tensor) -> torch.Tensor:
        return param

    def gradient_sound(self, gradient: torch.Tensor) -> torch.Tensor:
        return gradient  # the gradient of the samples is a waveform

    def update(self, param: torch.Tensor, gradient: torch.Tensor, seen: torch.Tensor,
               shift: int) -> tuple[torch.Tensor, float | None]:
        c = self.config
        updated = param.detach() + c.effective_step_size * self.level * normalize_gradient(
            gradient, c.normalize)
        if not torch.isfinite(updated).all():
            raise DreamsoundError("the dream diverged (NaN/Inf samples); lower --step-size")
        distance = self.distance(updated)
        if c.max_rmse_db is not None and distance > c.max_rmse_db:
            updated, distance = constraints.pull_back_interpolated(
                self.wave, updated, float(c.max_rmse_db), self.distance, at_one=distance)
        return updated, distance


class EnvelopeDomain(SoundDomain):
    """A smooth time-varying gain (nepers of magnitude) on the original's STFT.

    The parameter is ``[control frames, bands]``; :meth:`gains` spreads it over every STFT frame
    (linear in time) and bin (linear in log-frequency between band centres). Each step moves
    it by ``step_size`` dB on average along the normalised gradient, then clamps it to
    ±:data:`ENVELOPE_MAX_DB` and, with ``max_rmse_db``, scales it back onto the ball.
    """

    def __init__(self, model: AudioClassifier, config: DreamConfig, wave: torch.Tensor):
        super().__init__(model, config, wave)
        rate = model.sample_rate
        window = 2 ** round(math.log2(ENVELOPE_WINDOW_S * rate))
        self.geometry = StftGeometry(window, window, round(ENVELOPE_STFT_HOP_S * rate),
                                     device=model.device)
        with torch.no_grad():
            self.spectrum = self.geometry.analyze(wave)  # [T, bins]
        frames, bins = self.spectrum.shape
        hop_s = self.geometry.hop_length / rate
        controls = max(2, math.ceil(frames * hop_s / ENVELOPE_HOP_S) + 1)
        self.time_weights = _linear_weights(np.linspace(0, controls - 1, frames),
                                            controls).to(wave)  # [T, controls]
        centres = np.geomspace(ENVELOPE_LOW_HZ, 0.95 * rate / 2, ENVELOPE_BANDS)
        bin_hz = np.linspace(0.0, rate / 2, bins)
        position = np.interp(np.log(np.maximum(bin_hz, 1.0)), np.log(centres),
                             np.arange(ENVELOPE_BANDS))
        self.band_weights = _linear_weights(position, ENVELOPE_BANDS).to(wave)  # [bins, B]
        self.shape = (controls, ENVELOPE_BANDS)
        # The gains are nepers of magnitude: a step of x dB is x / (20 / ln 10) nepers.
        self.step_nepers = config.effective_step_size / metrics.DB_PER_NEPER
        self.max_nepers = ENVELOPE_MAX_DB / metrics.DB_PER_NEPER

    def begin_stage(self, stage: int) -> torch.Tensor:
        return torch.zeros(self.shape, dtype=self.wave.dtype, device=self.wave.device)

    def gains(self, param: torch.Tensor) -> torch.Tensor:
        """The gain of every STFT frame and bin ``[T, bins]`` (nepers)."""
        return self.time_weights @ param @ self.band_weights.T

    def sound(self, param: torch.Tensor) -> torch.Tensor:
        spectrum = self.spectrum * torch.exp(self.gains(param)).to(self.spectrum.dtype)
        return self.geometry.synthesize(spectrum, self.wave.shape[-1])

    def gradient_sound(self, gradient: torch.Tensor) -> torch.Tensor:
        """The original filtered by where the models want more energy: the positive part of
        the envelope gradient, spread over every frame and bin, as a linear gain."""
        wanted = gradient.clamp(min=0.0)
        peak = wanted.max()
        if not peak > 0:
            return torch.zeros_like(self.wave)
        with torch.no_grad():
            gains = self.gains(wanted / peak).to(self.spectrum.dtype)
            return self.geometry.synthesize(self.spectrum * gains, self.wave.shape[-1])

    def update(self, param: torch.Tensor, gradient: torch.Tensor, seen: torch.Tensor,
               shift: int) -> tuple[torch.Tensor, float | None]:
        c = self.config
        updated = param.detach() + self.step_nepers * normalize_gradient(gradient, c.normalize)
        updated = updated.clamp(-self.max_nepers, self.max_nepers)
        distance = self.distance(updated)
        if c.max_rmse_db is not None and distance > c.max_rmse_db:
            zero = torch.zeros_like(updated)
            updated, distance = constraints.pull_back_interpolated(
                zero, updated, float(c.max_rmse_db), self.distance, at_one=distance)
        return updated, distance


def _linear_weights(position: np.ndarray, points: int) -> torch.Tensor:
    """``[len(position), points]`` weights of linear interpolation between integer points."""
    position = np.clip(np.asarray(position, dtype=np.float64), 0, points - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, points - 1)
    frac = position - low
    weights = np.zeros((position.size, points))
    rows = np.arange(position.size)
    np.add.at(weights, (rows, low), 1.0 - frac)
    np.add.at(weights, (rows, high), frac)
    return torch.from_numpy(weights.astype(np.float32))
