"""DreamSound's waveform update rules (Halac & Delgadino 2021), with their STFT geometry.

``x`` the signal, ``g`` the normalised gradient, ``X``/``G`` their STFTs, ``mask(.)`` a hard cut
of an STFT magnitude normalised per frame, ``η`` the step:

==========  =================================  ======================================
rule        update                             with ``flip=True``
==========  =================================  ======================================
additive    ``x += η·level·g``                 (not defined)
filter      ``x = istft(mask(G)·X)``           ``x = istft(mask(X)·G)``, level-matched
filter-add  ``x += η·istft(mask(G)·X)``        ``x += η·level·istft(mask(X)·G)``
target      ``x += η·level·istft(mask(S)·G)``  ``x += η·istft(mask(G)·S)``
==========  =================================  ======================================

``S`` is the STFT of a second sound (``target_sound``); ``level`` is the RMS of the original,
so ``η`` is relative to the input's loudness. A real mask times a complex STFT keeps that
STFT's phase exactly; :func:`dreamsound.spectral.istft` applies the synthesis window and the
least-squares overlap-add normalisation (the original DreamSound swapped the real and
imaginary parts and skipped the synthesis window).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from dreamsound.config import RULES
from dreamsound.errors import DreamsoundError
from dreamsound.models.base import AudioClassifier
from dreamsound.spectral import hann_window, istft, stft

#: Default hard-cut threshold of the masks: bins whose magnitude is at least this fraction of
#: their frame's maximum pass (0.1 = -20 dB).
DEFAULT_MASK_THRESHOLD = 0.1


class StftGeometry:
    """Analysis/synthesis for the waveform rules, with the model front-end's STFT geometry.

    The signal is zero-padded by ``win_length`` samples on both sides before analysis, so every
    real sample lies where the overlap-added window is complete and :meth:`synthesize` of an
    unmodified :meth:`analyze` gives the input back to float rounding.
    """

    def __init__(self, n_fft: int, win_length: int, hop_length: int, *,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        self.n_fft, self.win_length, self.hop_length = n_fft, win_length, hop_length
        self.window = hann_window(win_length, dtype=dtype, device=device)

    @classmethod
    def of(cls, model: AudioClassifier) -> StftGeometry:
        c = model.front_end.config
        return cls(c.n_fft, c.win_length, c.hop_length, device=model.device)

    def _padding(self, n: int) -> tuple[int, int]:
        front = self.win_length
        frames = math.ceil((n + self.win_length) / self.hop_length) + 1
        total = (frames - 1) * self.hop_length + self.win_length
        return front, total - front - n

    def analyze(self, x: torch.Tensor) -> torch.Tensor:
        """Complex STFT ``[T, n_fft // 2 + 1]`` of ``x [n]`` (padded as described above)."""
        front, back = self._padding(x.shape[-1])
        return stft(F.pad(x, (front, back)), n_fft=self.n_fft, win_length=self.win_length,
                    hop_length=self.hop_length, window=self.window.to(x.dtype))

    def synthesize(self, spectrum: torch.Tensor, n: int) -> torch.Tensor:
        """Samples ``[n]`` from a spectrum made by :meth:`analyze` (least-squares overlap-add
        with the synthesis window, :func:`dreamsound.spectral.istft`)."""
        front, _ = self._padding(n)
        real_dtype = spectrum.real.dtype
        wave = istft(spectrum, n_fft=self.n_fft, win_length=self.win_length,
                     hop_length=self.hop_length, window=self.window.to(real_dtype),
                     length=front + n)
        return wave[front:]


def hard_cut_mask(magnitude: torch.Tensor, threshold: float) -> torch.Tensor:
    """``1`` where a bin's magnitude is at least ``threshold`` times its frame's maximum, else 0.

    Parameters
    ----------
    magnitude : Tensor [T, bins]
        An STFT magnitude (frames x bins).
    threshold : float
        In [0, 1]; 0.1 keeps the bins within 20 dB of their frame's loudest bin.

    Returns
    -------
    Tensor [T, bins]
        0/1 float mask. Frames with no energy get an all-zero row.

    Notes
    -----
    DreamSound normalised by the *global* maximum. A gradient's energy is concentrated in a
    few frames, so a global cut keeps almost nothing elsewhere and a few ``filter`` steps
    silence the sound (measured with YAMNet on ``examples/loop.wav``: -56 dB after 3 steps at
    0.1). Normalising each frame keeps, at every moment, the bins that matter most then.
    """
    if not 0.0 <= threshold <= 1.0:
        raise DreamsoundError(f"the mask threshold must be in [0, 1], got {threshold}")
    peak = magnitude.amax(dim=-1, keepdim=True)
    relative = magnitude / peak.clamp(min=torch.finfo(magnitude.dtype).tiny)
    return ((relative >= threshold) & (peak > 0)).to(magnitude.dtype)


def masked_resynthesis(geometry: StftGeometry, signal: torch.Tensor, mask: torch.Tensor
                       ) -> torch.Tensor:
    """``istft(mask · STFT(signal))``: the signal filtered by a real time-frequency mask.

    Multiplying the complex STFT by a real mask scales each bin's modulus and keeps its phase;
    the synthesis uses the window and its overlap-added square (exact for an all-ones mask).
    """
    spectrum = geometry.analyze(signal)
    if mask.shape != spectrum.shape:
        raise ValueError(f"mask {tuple(mask.shape)} does not match the STFT "
                         f"{tuple(spectrum.shape)}")
    return geometry.synthesize(spectrum * mask.to(spectrum.real.dtype), signal.shape[-1])


def rms(x: torch.Tensor) -> torch.Tensor:
    """Root mean square of ``x`` (computed in float64, returned in ``x``'s dtype)."""
    return x.double().square().mean().sqrt().to(x.dtype)


def waveform_update(x: torch.Tensor, gradient: torch.Tensor, *, rule: str, step_size: float,
                    level: float, geometry: StftGeometry, threshold: float = DEFAULT_MASK_THRESHOLD,
                    flip: bool = False, target_sound: torch.Tensor | None = None) -> torch.Tensor:
    """One waveform-domain update (see the module docstring's table).

    Parameters
    ----------
    x : Tensor [n]
        The current signal.
    gradient : Tensor [n]
        The normalised gradient of the objective with respect to ``x``.
    rule : str
        ``"additive"``, ``"filter"``, ``"filter-add"`` or ``"target"``.
    step_size : float
        η (dimensionless).
    level : float
        The loudness reference (RMS of the original) that scales gradient-shaped additions.
    geometry : StftGeometry
    threshold : float
        Hard-cut threshold of the masks, a fraction of the maximum magnitude.
    flip : bool
        Swap the roles of mask and filtered signal.
    target_sound : Tensor [n], optional
        The second sound of the ``target`` rule (same length as ``x``).

    Returns
    -------
    Tensor [n]
    """
    n = x.shape[-1]
    if rule == "additive":
        if flip:
            raise DreamsoundError("--flip applies to the filter, filter-add and target rules")
        return x + step_size * level * gradient
    if rule in ("filter", "filter-add"):
        if not flip:
            # Mask from the gradient, applied to the signal (the signal keeps its phase).
            mask = hard_cut_mask(geometry.analyze(gradient).abs(), threshold)
            filtered = masked_resynthesis(geometry, x, mask)
            return filtered if rule == "filter" else x + step_size * filtered
        # Flipped: mask from the signal, applied to the gradient (the gradient keeps its phase).
        mask = hard_cut_mask(geometry.analyze(x).abs(), threshold)
        filtered = masked_resynthesis(geometry, gradient, mask)
        if rule == "filter":
            # The filtered gradient replaces the signal; match the signal's loudness so repeated
            # steps neither explode nor vanish.
            scale = rms(x) / rms(filtered).clamp(min=torch.finfo(x.dtype).tiny)
            return filtered * scale
        return x + step_size * level * filtered
    if rule == "target":
        if target_sound is None:
            raise DreamsoundError("the target rule needs a second sound (--target-sound FILE)")
        if target_sound.shape[-1] != n:
            raise ValueError(f"target sound has {target_sound.shape[-1]} samples, x has {n}")
        if not flip:
            # The gradient restricted to the target sound's spectral footprint.
            mask = hard_cut_mask(geometry.analyze(target_sound).abs(), threshold)
            return x + step_size * level * masked_resynthesis(geometry, gradient, mask)
        # Flipped: the target sound restricted to where the gradient is strong.
        mask = hard_cut_mask(geometry.analyze(gradient).abs(), threshold)
        return x + step_size * masked_resynthesis(geometry, target_sound, mask)
    raise DreamsoundError(f"unknown rule {rule!r}; choose one of {', '.join(RULES)}")
