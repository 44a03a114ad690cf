"""Per-step transforms of the gradient and of what the model sees.

Each transform is a small callable applied once per step by the loop
(:mod:`dreamsound.engine.loop`): gradient transforms take and return a gradient of the
parameter's shape; view transforms change the input a model sees (a random time roll) without
changing the parameter. Adding one is one class here.
"""

from __future__ import annotations

import bisect
import functools
import math

import torch
import torch.nn.functional as F

from dreamsound.config import NORMALIZATIONS
from dreamsound.errors import DreamsoundError

#: Largest change of one element per step, in units of the mean step (``normalize="mean"``).
MAX_ELEMENT_STEP = 8.0


def smooth_gradient(gradient: torch.Tensor, passes: int) -> torch.Tensor:
    """Blur a log-mel gradient ``[T, F]`` with ``passes`` separable ``[1, 2, 1] / 4`` kernels
    along time and along mel bands (edges replicated; a constant stays constant).

    Why: neighbouring STFT frames share most of their samples (YAMNet: 400-sample windows every
    160) and neighbouring mel triangles share FFT bins, so a change that alternates from one
    frame or band to the next cannot be realised by any sound. Strided convolutions make raw
    gradients rich in exactly such checkerboard patterns; ascending them raises the confidence
    on the spectrogram but not on the rendered audio. One pass keeps the rendered confidence
    much closer to the dreamed one at the same dB distance (measured on YAMNet).
    """
    if passes <= 0:
        return gradient
    kernel = gradient.new_tensor([0.25, 0.5, 0.25])
    image = gradient.T[None, None]  # [1, 1, F, T]
    for _ in range(passes):
        image = F.conv2d(F.pad(image, (1, 1, 0, 0), mode="replicate"), kernel.view(1, 1, 1, 3))
        image = F.conv2d(F.pad(image, (0, 0, 1, 1), mode="replicate"), kernel.view(1, 1, 3, 1))
    return image[0, 0].T


def normalize_gradient(gradient: torch.Tensor, how: str, *, rows: int | None = None
                       ) -> torch.Tensor:
    """``g / mean|g|`` (``"mean"``) or ``g / max|g|`` (``"max"``).

    ``rows``: take the statistic over the first ``rows`` entries of the first axis only (the
    frames that may change), so the mean step over those is 1 (slightly less where ``"mean"``
    clips an element at :data:`MAX_ELEMENT_STEP`).

    Raises :class:`DreamsoundError` for a non-finite or all-zero gradient (nothing to follow).
    """
    if not torch.isfinite(gradient).all():
        raise DreamsoundError("the gradient holds NaN/Inf values; the model's output is not "
                              "differentiable at this input")
    magnitude = gradient.abs() if rows is None else gradient[:rows].abs()
    scale = magnitude.mean() if how == "mean" else magnitude.max()
    if how not in NORMALIZATIONS:
        raise DreamsoundError(f"unknown normalisation {how!r}; choose mean or max")
    if not scale > 0:
        raise DreamsoundError("the gradient is zero everywhere: nothing to ascend. A silent input "
                              "has no gradient in the waveform domain; use --domain spectrogram "
                              "or start from noise (noise:3s)")
    normalized = gradient / scale
    if how == "mean":
        # A gradient concentrated on a few bins would move them by hundreds of dB within a few
        # steps (until exp() of the log-mel overflows on rendering); no element may move more
        # than MAX_ELEMENT_STEP mean steps at once.
        normalized = normalized.clamp(-MAX_ELEMENT_STEP, MAX_ELEMENT_STEP)
    return normalized


class Jitter:
    """A random time roll per step (feature-visualisation "jitter"), seeded.

    Draws an integer shift in ``[-limit, limit]`` units (frames or samples, as the domain counts
    time) from the dream's one generator; a limit of 0 draws nothing, so a dream without jitter
    uses no random numbers here.
    """

    def __init__(self, limit: int, generator: torch.Generator):
        self.limit = int(limit)
        self.generator = generator

    def draw(self) -> int:
        """The next shift (0 when the limit is 0)."""
        if self.limit <= 0:
            return 0
        return int(torch.randint(-self.limit, self.limit + 1, (1,), generator=self.generator))


# ---------------------------------------------------------------------------------------------
# Random changes of a sound (expectation over transformations)
# ---------------------------------------------------------------------------------------------
# Each step of a robust dream averages the objective over a few randomly changed copies of the
# dreamed sound, so the dream must hold up under changes no listener minds (a little delay, gain,
# detuning, noise, colour, room, bandwidth) — which adversarial perturbations do not. Every
# change is differentiable in the sound and draws its parameters from the dream's generator.


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


@functools.lru_cache(maxsize=16)
def _smooth_sizes(limit: int, primes: tuple[int, ...]) -> tuple[int, ...]:
    """Every length up to ``limit`` whose only prime factors are ``primes``, ascending (the
    lengths an FFT takes fastest)."""
    sizes = [1]
    for prime in primes:
        sizes = [size * prime**k for size in sizes
                 for k in range(int(math.log(limit / size, prime) + 1e-9) + 1)]
    return tuple(sorted(size for size in sizes if size <= limit))


def _table_over(n: float, primes: tuple[int, ...]) -> tuple[int, ...]:
    """:func:`_smooth_sizes` up to the power of two above ``n`` (so a few tables serve all)."""
    return _smooth_sizes(1 << math.ceil(math.log2(max(2.0, n))), primes)


def fast_fft_size(n: int) -> int:
    """The smallest length >= ``n`` whose only prime factors are 2, 3 and 5: an FFT of
    ``n`` + a random reverb length can have a large prime factor and take ten times longer."""
    n = max(1, int(n))
    table = _table_over(2 * n, (2, 3, 5))  # a power of two lies in [n, 2n]
    return table[bisect.bisect_left(table, n)]


def speed_sizes(n: int, factor: float) -> tuple[int, int]:
    """``(padded, out)``: the FFT sizes that play ``n`` samples ``factor`` times faster.

    Resampling ``n`` samples to ``round(n / factor)`` takes an inverse FFT of that length (and
    a forward one in the backward pass), which for a random factor often has a large prime
    factor: ~6 ms instead of ~0.6 ms for 88,000 samples, a tenth of a robust dream's time. Both
    sizes here have only the prime factors 2, 3, 5 and 7: the input is zero-padded to
    ``padded`` (``n`` to 1.05 ``n``) and resampled to ``out``, the pair whose ratio is nearest
    to ``factor`` -- within 7 cents for lengths from 20,000 to 300,000 (2,000 random draws
    within 50 cents: median 0.65, largest 6.5).
    """
    n = max(1, int(n))
    table = _table_over(1.1 * n * max(1.0, 1.0 / factor), (2, 3, 5, 7))
    best: tuple[float, int, int] | None = None
    for padded in table[bisect.bisect_left(table, n):]:
        if padded > max(n + 1, 1.05 * n):
            break
        at = bisect.bisect_left(table, padded / factor)
        for out in table[max(0, at - 1):at + 1]:
            error = abs(math.log(padded / out / factor))
            if best is None or error < best[0]:
                best = (error, padded, out)
    if best is None:  # a short sound with no such size close above it: as it comes
        return n, max(1, round(n / factor))
    return best[1], best[2]


def _frequencies(n: int, rate: int, device: torch.device) -> torch.Tensor:
    return torch.fft.rfftfreq(n, 1.0 / rate).to(device)


#: Every change, by name (the changes a robust dream draws from). A subclass of
#: :class:`SoundChange` with a ``name`` registers itself here when its module is imported, so a
#: new change is one class in one file.
SOUND_CHANGES: dict[str, type[SoundChange]] = {}


class SoundChange:
    """Base of the random changes: ``change(audio [n], rate Hz, generator) -> audio [n]``,
    differentiable in ``audio``, its parameters drawn from ``generator``."""

    name = ""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            SOUND_CHANGES[cls.name] = cls

    def __call__(self, audio: torch.Tensor, rate: int, generator: torch.Generator
                 ) -> torch.Tensor:
        raise NotImplementedError


class TimeShift(SoundChange):
    """A circular delay of up to ``max_seconds`` either way."""

    name = "shift"

    def __init__(self, max_seconds: float = 0.05):
        self.max_seconds = max_seconds

    def __call__(self, audio, rate, generator):
        limit = round(self.max_seconds * rate)
        shift = int(torch.randint(-limit, limit + 1, (1,), generator=generator))
        return torch.roll(audio, shift, dims=-1)


class Gain(SoundChange):
    """A level change of up to ``max_db`` either way."""

    name = "gain"

    def __init__(self, max_db: float = 6.0):
        self.max_db = max_db

    def __call__(self, audio, rate, generator):
        return audio * 10.0 ** (_uniform(generator, -self.max_db, self.max_db) / 20.0)


class Speed(SoundChange):
    """Playback a little faster or slower (pitch and tempo together), up to ``max_cents``."""

    name = "speed"

    def __init__(self, max_cents: float = 50.0):
        self.max_cents = max_cents

    def __call__(self, audio, rate, generator):
        factor = 2.0 ** (_uniform(generator, -self.max_cents, self.max_cents) / 1200.0)
        return self.at_factor(audio, factor)

    @staticmethod
    def at_factor(audio: torch.Tensor, factor: float) -> torch.Tensor:
        """``audio [..., n]`` played ``factor`` times faster (within a few cents, see
        :func:`speed_sizes`), cut or zero-padded back to ``n`` samples."""
        from dreamsound.spectral.resample import resample_fft

        n = audio.shape[-1]
        padded, out = speed_sizes(n, factor)
        # The same rate in and out: the length alone makes the change of speed.
        changed = resample_fft(F.pad(audio, (0, padded - n)), 1, 1, length=out)
        if changed.shape[-1] >= n:
            return changed[..., :n]
        return F.pad(changed, (0, n - changed.shape[-1]))


class Noise(SoundChange):
    """White noise at a signal-to-noise ratio between ``snr_db`` bounds (dB)."""

    name = "noise"

    def __init__(self, snr_db: tuple[float, float] = (20.0, 40.0)):
        self.snr_db = snr_db

    def __call__(self, audio, rate, generator):
        level = audio.detach().square().mean().sqrt() * 10.0 ** (
            -_uniform(generator, *self.snr_db) / 20.0)
        noise = torch.randn(audio.shape, generator=generator).to(audio)
        return audio + level * noise


class Tilt(SoundChange):
    """A spectral tilt (a gentle EQ) of up to ``max_db_per_octave`` around 1 kHz."""

    name = "tilt"

    def __init__(self, max_db_per_octave: float = 3.0):
        self.max_db_per_octave = max_db_per_octave

    def __call__(self, audio, rate, generator):
        slope = _uniform(generator, -self.max_db_per_octave, self.max_db_per_octave)
        freqs = _frequencies(audio.shape[-1], rate, audio.device).clamp(min=50.0)
        gain = 10.0 ** (slope * torch.log2(freqs / 1000.0) / 20.0)
        spectrum = torch.fft.rfft(audio, dim=-1) * gain.to(audio.dtype)
        return torch.fft.irfft(spectrum, n=audio.shape[-1], dim=-1)


class Reverb(SoundChange):
    """A short synthetic room: exponentially decaying noise (RT60 in ``rt60_s``) mixed in at a
    wet share in ``wet``."""

    name = "reverb"

    def __init__(self, rt60_s: tuple[float, float] = (0.1, 0.5),
                 wet: tuple[float, float] = (0.1, 0.4)):
        self.rt60_s, self.wet = rt60_s, wet

    def __call__(self, audio, rate, generator):
        rt60 = _uniform(generator, *self.rt60_s)
        wet = _uniform(generator, *self.wet)
        length = max(2, round(rt60 * rate))
        t = torch.arange(length, dtype=audio.dtype) / rate
        response = torch.randn(length, generator=generator).to(audio) * torch.exp(
            -6.908 * t / rt60).to(audio)  # -60 dB at rt60
        response = response / response.square().sum().sqrt()
        n = audio.shape[-1]
        size = fast_fft_size(n + length)  # zero-padded: still a linear convolution
        tail = torch.fft.irfft(torch.fft.rfft(audio, n=size) * torch.fft.rfft(response, n=size),
                               n=size)[..., :n]
        return (1.0 - wet) * audio + wet * tail


class BandLimit(SoundChange):
    """A low-pass with a cut-off between ``min_hz`` and the Nyquist frequency (half-octave
    cosine roll-off)."""

    name = "bandlimit"

    def __init__(self, min_hz: float = 4000.0):
        self.min_hz = min_hz

    def __call__(self, audio, rate, generator):
        nyquist = rate / 2.0
        cutoff = _uniform(generator, min(self.min_hz, nyquist), nyquist)
        freqs = _frequencies(audio.shape[-1], rate, audio.device)
        octaves = torch.log2(freqs.clamp(min=1.0) / cutoff).clamp(0.0, 0.5) / 0.5
        gain = 0.5 * (1.0 + torch.cos(torch.pi * octaves))
        spectrum = torch.fft.rfft(audio, dim=-1) * gain.to(audio.dtype)
        return torch.fft.irfft(spectrum, n=audio.shape[-1], dim=-1)


class RandomChanges:
    """``samples`` randomly changed copies of a sound per step: each change applies with
    ``probability``, in a fixed order.

    Parameters
    ----------
    changes : sequence of SoundChange
    samples : int
        Copies per step (K of the expectation).
    probability : float
        Chance that each change applies to a copy.
    """

    def __init__(self, changes: list[SoundChange], *, samples: int, probability: float = 0.5):
        self.changes = list(changes)
        self.samples = int(samples)
        self.probability = float(probability)

    @classmethod
    def named(cls, names: list[str], *, samples: int) -> RandomChanges:
        return cls([SOUND_CHANGES[n]() for n in names], samples=samples)

    def draw(self, audio: torch.Tensor, rate: int, generator: torch.Generator
             ) -> list[torch.Tensor]:
        """The changed copies of ``audio [n]`` for one step."""
        copies = []
        for _ in range(self.samples):
            changed = audio
            for change in self.changes:
                if float(torch.rand((), generator=generator)) < self.probability:
                    changed = change(changed, rate, generator)
            copies.append(changed)
        return copies
