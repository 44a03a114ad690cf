"""Augmentation of training windows, on mel magnitudes: gains and mixtures are physical there,
and it is all batched. :class:`Augmentation` holds the settings; :func:`augment` and
:func:`mixup` apply them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from dreamsound.spectral import unlog_mel


@dataclass(frozen=True)
class Augmentation:
    """Random changes applied to each training window.

    Attributes
    ----------
    gain_db : (float, float)
        Level change range in dB.
    eq_db : float
        Standard deviation in dB of a smooth random EQ ripple over the mel bands (the timbre of
        rooms, microphones and soundfonts differs in just this way).
    tilt_db : float
        Largest spectral tilt in dB from the lowest to the highest band (uniform in +-).
        Sample sets differ most in brightness: FluidR3_GM is several dB brighter above 2 kHz
        than TimGM6mb or sf_GMbank for the same instruments.
    reverb_prob, reverb_s, reverb_wet : float, (float, float), (float, float)
        Probability of a synthetic room on the window: an exponentially decaying tail added in
        the power domain, time constant ``reverb_s`` seconds (shorter in high bands, as in real
        rooms), at a steady-state level ``reverb_wet`` times the dry power. It blurs the note
        envelopes that differ most between sample sets (one soundfont's cello decays where
        another's sustains) and that rooms blur in real recordings anyway.
    shift_bands : float
        Largest shift of the spectrum along the mel axis, in bands (uniform in +-; one band is
        about a semitone above 1 kHz): instrument bodies and samples differ in formants.
    lowpass_prob, highpass_prob : float
        Probabilities of a random roll-off above 2.5-8 kHz (band-limited samples, old
        recordings) and below 60-250 Hz (small speakers, thin samples).
    mix_prob, mix_db : float, (float, float)
        Probability of adding another (different-class) window, and its level relative to this
        one in dB: the label stays this window's (it remains predominant).
    noise_prob, noise_db : float, (float, float)
        Probability and level (dB re a full-scale sine's mel peak) of a noise floor.
    mask_prob : float
        Probability of one time mask (<= 6 frames) and one frequency mask (<= 10 bands).
    mixup_prob, mixup_alpha : float
        Mixup (Zhang et al. 2018): with probability ``mixup_prob`` a window is blended with
        another of the batch, ``lam * own + (1 - lam) * other`` in the magnitude domain and
        likewise its target, ``lam ~ Beta(alpha, alpha)``. Off by default.
    vibrato_prob, vibrato_bands, vibrato_hz : float, float, (float, float)
        Probability of a vibrato: the spectrum moves along the mel axis by a sine of up to
        ``vibrato_bands`` bands (one band is about a semitone above 1 kHz) at ``vibrato_hz``.
        Players bend and wobble pitch where sampled notes hold it still. Off by default.
    compress_prob, compress_ratio, compress_threshold_db, compress_release_s
        Probability of a compressor on the window's frame level (dB of the summed band power,
        instant attack, release ``compress_release_s`` seconds): above a threshold
        ``compress_threshold_db`` dB under the window's loudest frame the level grows only
        ``1 / ratio`` as fast. Mixed and mastered recordings are compressed; renders are not.
        Off by default.
    """

    gain_db: tuple[float, float] = (-24.0, 6.0)
    eq_db: float = 4.0
    tilt_db: float = 12.0
    shift_bands: float = 1.5
    reverb_prob: float = 0.5
    reverb_s: tuple[float, float] = (0.05, 0.6)
    reverb_wet: tuple[float, float] = (0.1, 1.0)
    lowpass_prob: float = 0.3
    highpass_prob: float = 0.2
    mix_prob: float = 0.3
    mix_db: tuple[float, float] = (-18.0, -6.0)
    noise_prob: float = 0.3
    noise_db: tuple[float, float] = (-80.0, -45.0)
    mask_prob: float = 0.3
    mixup_prob: float = 0.0
    mixup_alpha: float = 0.3
    vibrato_prob: float = 0.0
    vibrato_bands: float = 0.5
    vibrato_hz: tuple[float, float] = (4.0, 7.0)
    compress_prob: float = 0.0
    compress_ratio: tuple[float, float] = (2.0, 8.0)
    compress_threshold_db: tuple[float, float] = (-24.0, -6.0)
    compress_release_s: tuple[float, float] = (0.05, 0.3)


FULL_SCALE_MEL = 9.5  # Slaney mel peak of a full-scale sine with this front-end (measured)


def augment(log_mel: torch.Tensor, labels: torch.Tensor, config: Augmentation, offset: float,
            generator: torch.Generator, *, frame_s: float = 512 / 22050) -> torch.Tensor:
    """Augment a batch of log-mel windows ``[B, T, F]`` (see :class:`Augmentation`);
    ``frame_s`` is the frame hop in seconds."""
    batch, frames, bands = log_mel.shape

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(*shape, generator=generator)

    magnitude = unlog_mel(log_mel, offset)
    if config.mix_prob > 0 and batch > 1:
        partner = torch.randint(0, batch, (batch,), generator=generator)
        use = (torch.rand(batch, generator=generator) < config.mix_prob) & \
            (labels[partner] != labels)
        level = 10 ** (uniform(*config.mix_db, batch) / 20) * use
        # Level relative to this window's own loudness (mean magnitude ratio).
        ratio = magnitude.mean(dim=(1, 2)) / magnitude[partner].mean(dim=(1, 2)).clamp(min=1e-8)
        magnitude = magnitude + (level * ratio)[:, None, None] * magnitude[partner]
    # An EQ curve in dB per band: smooth ripple (a few cosines over the band index with
    # decaying amplitude), a tilt pivoting near 1 kHz (band 40 of 128), and roll-offs.
    index = torch.arange(bands, dtype=torch.float32)
    position = index / max(bands - 1, 1)
    curve = torch.zeros(batch, bands)
    for k in range(1, 7):
        amplitude = torch.randn(batch, 1, generator=generator) * config.eq_db / k
        phase = uniform(0, 2 * math.pi, batch, 1)
        curve += amplitude * torch.cos(k * math.pi * position + phase)
    curve += uniform(-config.tilt_db, config.tilt_db, batch, 1) * (position - 40 / 128)
    low = (torch.rand(batch, 1, generator=generator) < config.lowpass_prob).float()
    cutoff = uniform(0.55, 0.95, batch, 1)      # band 70-122 of 128: ~2.5-8 kHz
    slope = uniform(40.0, 200.0, batch, 1)      # dB per unit of position (~0.3-1.6 dB/band)
    curve -= low * slope * torch.clamp(position - cutoff, min=0.0)
    high = (torch.rand(batch, 1, generator=generator) < config.highpass_prob).float()
    corner = uniform(0.015, 0.06, batch, 1)     # band 2-8: ~60-250 Hz
    curve -= high * 400.0 * torch.clamp(corner - position, min=0.0)
    magnitude = magnitude * 10 ** (curve[:, None, :] / 20)
    if config.shift_bands > 0 or config.vibrato_prob > 0:
        # Shift per window and frame [B, T, 1] in bands: a fixed offset plus a vibrato.
        shift = uniform(-config.shift_bands, config.shift_bands, batch, 1, 1)
        if config.vibrato_prob > 0:
            use = (torch.rand(batch, 1, 1, generator=generator) < config.vibrato_prob).float()
            depth = uniform(0.0, config.vibrato_bands, batch, 1, 1) * use
            rate = uniform(*config.vibrato_hz, batch, 1, 1)
            phase = uniform(0, 2 * math.pi, batch, 1, 1)
            seconds = torch.arange(frames, dtype=torch.float32)[None, :, None] * frame_s
            shift = shift + depth * torch.sin(2 * math.pi * rate * seconds + phase)
        # Linear interpolation at shifted band positions (edges repeat).
        source = (index[None, None, :] - shift).clamp(0, bands - 1).expand(-1, frames, -1)
        below = source.floor().long()
        above = (below + 1).clamp(max=bands - 1)
        frac = source - below
        magnitude = (torch.gather(magnitude, 2, below) * (1 - frac) +
                     torch.gather(magnitude, 2, above) * frac)
    if config.reverb_prob > 0:
        use = (torch.rand(batch, 1, generator=generator) < config.reverb_prob).float()
        tau = uniform(*config.reverb_s, batch, 1) * (1.0 - 0.6 * position)  # [B, F] seconds
        decay = torch.exp(-frame_s / tau)
        # Wet gain so that a steady input gets a tail of `wet` times its own power.
        wet = uniform(*config.reverb_wet, batch, 1) * (1 - decay) / decay * use
        power = magnitude ** 2
        tail = torch.zeros(batch, bands)
        frames_out = []
        for t in range(frames):
            frames_out.append(power[:, t] + wet * tail)
            tail = decay * (tail + power[:, t])
        magnitude = torch.sqrt(torch.stack(frames_out, dim=1))
    if config.compress_prob > 0:
        magnitude = magnitude * _compressor_gain(magnitude, config, frame_s, generator)
    magnitude = magnitude * 10 ** (uniform(*config.gain_db, batch)[:, None, None] / 20)
    if config.noise_prob > 0:
        use = torch.rand(batch, generator=generator) < config.noise_prob
        level = FULL_SCALE_MEL * 10 ** (uniform(*config.noise_db, batch) / 20) * use
        # |complex Gaussian| per cell: the magnitude of noise in each band and frame.
        noise = torch.sqrt(torch.randn(batch, frames, bands, generator=generator) ** 2 +
                           torch.randn(batch, frames, bands, generator=generator) ** 2)
        magnitude = magnitude + level[:, None, None] * noise
    out = torch.log(magnitude + offset)
    if config.mask_prob > 0:
        floor = math.log(offset)
        masked = torch.rand(batch, generator=generator) < config.mask_prob
        for i in torch.nonzero(masked).flatten().tolist():
            t0 = int(torch.randint(0, frames, (1,), generator=generator))
            f0 = int(torch.randint(0, bands, (1,), generator=generator))
            out[i, t0:t0 + int(torch.randint(1, 7, (1,), generator=generator))] = floor
            out[i, :, f0:f0 + int(torch.randint(1, 11, (1,), generator=generator))] = floor
    return out


def _compressor_gain(magnitude: torch.Tensor, config: Augmentation, frame_s: float,
                     generator: torch.Generator) -> torch.Tensor:
    """The gain ``[B, T, 1]`` of a downward compressor on each window's frame level (see
    :class:`Augmentation`); 1 for the windows it skips."""
    batch, frames, _ = magnitude.shape

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(batch, generator=generator)

    use = torch.rand(batch, generator=generator) < config.compress_prob
    ratio = uniform(*config.compress_ratio)
    level = 10 * torch.log10((magnitude ** 2).sum(dim=2) + 1e-12)            # [B, T] dB
    threshold = level.max(dim=1).values + uniform(*config.compress_threshold_db)
    release = torch.exp(-frame_s / uniform(*config.compress_release_s))
    # Envelope follower: jumps up at once, falls back with the release time constant.
    envelope = [level[:, 0]]
    for t in range(1, frames):
        falling = release * envelope[-1] + (1 - release) * level[:, t]
        envelope.append(torch.maximum(level[:, t], falling))
    over = torch.clamp(torch.stack(envelope, dim=1) - threshold[:, None], min=0.0)
    gain_db = -(1 - 1 / ratio)[:, None] * over * use[:, None]
    return 10 ** (gain_db[..., None] / 20)


def mixup(log_mel: torch.Tensor, targets: torch.Tensor, config: Augmentation, offset: float,
          generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend windows ``[B, T, F]`` and their targets ``[B, C]`` pairwise (see
    :class:`Augmentation`); the blend is of magnitudes, as mixing two sounds would be."""
    batch = log_mel.shape[0]
    partner = torch.randperm(batch, generator=generator)
    lam = torch.distributions.Beta(config.mixup_alpha, config.mixup_alpha).sample((batch,))
    lam = torch.where(torch.rand(batch, generator=generator) < config.mixup_prob, lam, 1.0)
    magnitude = unlog_mel(log_mel, offset)
    mixed = lam[:, None, None] * magnitude + (1 - lam[:, None, None]) * magnitude[partner]
    return (torch.log(mixed + offset),
            lam[:, None] * targets + (1 - lam[:, None]) * targets[partner])
