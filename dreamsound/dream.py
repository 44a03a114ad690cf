"""The dream engine: gradient ascent on a sound so that a classifier hears more of something.

One engine serves every model (it only uses the :class:`~dreamsound.models.base.AudioClassifier`
contract: front-end, class names, named layers) and two domains:

``spectrogram`` (default)
    Ascend on the model's own log-mel ``[T, F]``; render audio once at the end with
    :meth:`LogMelFrontEnd.invert <dreamsound.spectral.LogMelFrontEnd.invert>` (non-negative
    mel -> linear solve keeping the original's fine structure, fast Griffin-Lim started from
    the original's phase, then a fit of each STFT bin's gain and phase to the dreamed log-mel).
    Cheap per step (no STFT in the loop) and precise in dB. With ``until_rendered`` the audio
    is rendered and re-analysed every few steps once the dream reaches ``until``; a rendering
    that falls short becomes the new starting point (its log-mel and phase), so the dream never
    drifts into spectrograms no sound can carry.
``waveform``
    Ascend on the samples through the differentiable front-end, as the original DreamSound did,
    with one of its update rules (``x`` the signal, ``g`` the normalised gradient, ``X``/``G``
    their STFTs, ``mask(.)`` a hard cut of an STFT magnitude normalised per frame, ``η`` the step):

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

Objectives: a target class (ascend its **logit**, mean over patches; several classes with weights,
negative weights push away), a layer's activation energy (mean of squared activations, optionally
of one channel), or, with neither, the input's own top class.

Step control: each step moves by a normalised gradient ``g / mean|g|`` (``normalize="mean"``, the
default) or ``g / max|g|`` (``"max"``) times the step size: in **dB** of the mel spectrogram in
the spectrogram domain (``step_size=0.25`` moves the log-mel by 0.25 dB on average per step), and
relative to the input's RMS in the waveform domain. ``until`` stops once the target confidence
reaches a value; ``max_rmse_db`` keeps the dream within a distance of the original (after each
step the change is scaled back onto the ball ``rmse_db <= max_rmse_db``; exact in the
spectrogram domain, where the dB distance is linear in the change); ``distance_weight`` adds a
penalty ``- λ · mse_db2`` to the objective. ``octaves > 1`` dreams coarse-to-fine on time-scaled
spectrograms; ``jitter`` rolls the input by a random offset each step; ``seed`` fixes every random
choice (same seed, same bytes).

Report keys (``DreamResult.report``; the ``--json`` output of ``dreamsound dream``). Stable names:

=======================  ===========================================================================
``model``                registry name of the model
``input``                the input file path, or the generated start (``"noise:3s"``)
``objective``            ``"target"``, ``"layer"`` or ``"top-class"``
``target``               the target class name(s) joined with ``" + "`` (None for a layer)
``targets``              per class: ``name``, ``index``, ``weight`` and its three confidences
``layer``, ``channel``   the layer objective (None otherwise)
``domain``, ``rule``     ``"spectrogram"``/``"waveform"``; the update rule (None for spectrogram)
``flip``                 whether the waveform rule's roles were swapped
``steps``                gradient steps taken (summed over octaves)
``steps_requested``      steps asked for (per octave)
``stopped``              ``"until"`` when ``until`` was reached, else ``"steps"``
``seconds``              wall-clock seconds of the dream (loop + rendering)
``seconds_per_step``     mean seconds per gradient step
``confidence_before``    target confidence of the original (the minimum over positively weighted
                         targets when there are several; None for a layer objective)
``confidence_after``     ... of the dreamed spectrogram (spectrogram domain: the ascended log-mel;
                         waveform domain: the log-mel of the dreamed samples, before limiting)
``confidence_rendered``  ... of the rendered audio: after peak limiting, and, once the file is
                         written (:func:`save_dream`), re-loaded from it and re-analysed
``rendered_from``        ``"memory"`` or ``"file"``: where ``confidence_rendered`` was measured
``success_after``        :func:`dreamsound.metrics.is_success` on the dreamed spectrogram
``success_rendered``     ... on the rendered audio
``top_before``           top-3 classes of the original: ``[{"name", "score"}]``
``top_after``            top-3 of the dreamed spectrogram
``top_rendered``         top-3 of the rendered audio
``objective_before``     objective value (logit or energy) before and after (dreamed spectrogram)
``objective_after``
``rmse_db``, ``mse_db2``  distance original -> dreamed spectrogram (dB, dB²; dreamsound.metrics)
``rmse_db_rendered``     distance original -> rendered audio (dB)
``mse_db2_rendered``
``sample_rate``          Hz of the written audio (the model's rate)
``duration_s``           seconds of audio
``settings``             every knob used (step_size, normalize, until, max_rmse_db, ...)
``outputs``              paths written (``audio``, ``gradient``, ``report``, ``plot``,
                         ``snapshots``); empty until :func:`save_dream`
=======================  ===========================================================================
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dreamsound import metrics
from dreamsound.errors import AudioError, DreamsoundError, OutputError, TargetError, did_you_mean
from dreamsound.models.base import AudioClassifier
from dreamsound.models.registry import DEFAULT_MODEL, load_model
from dreamsound.spectral import hann_window, istft, stft

log = logging.getLogger(__name__)

DOMAINS = ("spectrogram", "waveform")
RULES = ("additive", "filter", "filter-add", "target")
NORMALIZATIONS = ("mean", "max")

#: Default gradient steps per octave. At the default step size this moves a sound by a few dB
#: (clearly audible); much longer dreams drift into spectrograms no sound can realise, and the
#: rendered audio's confidence falls behind the dreamed one (instrument model on the example
#: loop toward violin: rendered 0.999 after 40 steps, 0.58 after 100).
DEFAULT_STEPS = 50
#: Default step size per domain: dB of the mel spectrogram (spectrogram domain, mean absolute
#: change per step), or a fraction of the input's RMS (waveform domain).
DEFAULT_STEP_SIZE = {"spectrogram": 0.25, "waveform": 0.05}
#: Default hard-cut threshold of the waveform rules' masks: bins whose magnitude is at least this
#: fraction of their frame's maximum pass (0.1 = -20 dB).
DEFAULT_MASK_THRESHOLD = 0.1
#: Default passes of the [1, 2, 1] gradient blur over time and mel bands (spectrogram domain).
DEFAULT_SMOOTH = 1
#: With ``until_rendered``, steps between two render checks after one that fell short.
UNTIL_RENDERED_EVERY = 3
#: Default Griffin-Lim iterations when rendering (fast GL from the original's phase).
DEFAULT_GL_ITERATIONS = 32
#: Default log-mel fitting steps after Griffin-Lim when rendering
#: (:meth:`dreamsound.spectral.LogMelFrontEnd.fit_waveform`): they bring the written audio
#: about as close to the original as the dream itself instead of ~0.3 dB further.
DEFAULT_FIT_ITERATIONS = 50
#: Peak of the written audio unless limiting is turned off (dBFS).
LIMIT_DBFS = -1.0
#: Floor of the waveform step's level reference (RMS), so a near-silent start can still move.
_LEVEL_FLOOR = 1e-3

ProgressCallback = Callable[[int, int, dict], None]
SnapshotCallback = Callable[[int, np.ndarray], None]
GradientCallback = Callable[[int, torch.Tensor], None]


# ---------------------------------------------------------------------------------------------
# Inputs: a file, an array, or a generated start
# ---------------------------------------------------------------------------------------------

_SECONDS = r"(\d+(?:\.\d*)?|\.\d+)(ms|s)?"
_START_RE = re.compile(rf"^(noise|silence|sine:(\d+(?:\.\d*)?))\s*:\s*{_SECONDS}$", re.IGNORECASE)

#: RMS of the ``noise:`` start and peak of the ``sine:`` start (linear, full scale = 1).
NOISE_RMS = 0.05
SINE_PEAK = 0.25


def parse_start(spec: str) -> tuple[str, float, float | None] | None:
    """Parse a generated start ``"noise:3s"``, ``"silence:2s"``, ``"sine:440:2s"``.

    Returns ``(kind, seconds, frequency_hz or None)``, or None when ``spec`` is not one (then it
    is a file name). A bare number is seconds; ``ms`` is accepted (``noise:500ms``).
    """
    match = _START_RE.match(str(spec).strip())
    if match is None:
        return None
    head, frequency, amount, unit = match.groups()
    seconds = float(amount) / (1000.0 if (unit or "s").lower() == "ms" else 1.0)
    kind = head.split(":")[0].lower()
    return kind, seconds, float(frequency) if frequency is not None else None


def generate_start(spec: str, *, sample_rate: int, seed: int = 0) -> np.ndarray:
    """A generated start waveform: white noise (RMS 0.05), digital silence, or a sine (peak 0.25).

    Parameters
    ----------
    spec : str
        ``"noise:DUR"``, ``"silence:DUR"`` or ``"sine:FREQ_HZ:DUR"``; DUR like ``3s``, ``500ms``.
    sample_rate : int
        Hz.
    seed : int
        Seeds the noise.

    Returns
    -------
    ndarray float32 [round(seconds * sample_rate)]
    """
    parsed = parse_start(spec)
    if parsed is None:
        raise AudioError(f"{spec!r} is not a generated start; use noise:3s, silence:2s or "
                         "sine:440:2s")
    kind, seconds, frequency = parsed
    n = round(seconds * sample_rate)
    if n <= 0 or seconds > 600:
        raise AudioError(f"{spec}: the length must be between 1 sample and 600 s")
    if kind == "noise":
        rng = np.random.default_rng(seed)
        return (NOISE_RMS * rng.standard_normal(n)).astype(np.float32)
    if kind == "silence":
        return np.zeros(n, dtype=np.float32)
    if frequency is None or not 0 < frequency < sample_rate / 2:
        raise AudioError(f"{spec}: the sine frequency must be between 0 and {sample_rate / 2:g} "
                         "Hz (the model's Nyquist frequency)")
    t = np.arange(n) / sample_rate
    return (SINE_PEAK * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def _load_input(audio: str | Path | np.ndarray, *, sample_rate: int, input_rate: int | None,
                seed: int) -> tuple[np.ndarray, str, Path | None]:
    """``(waveform at sample_rate, label, path or None)`` of any accepted input."""
    from dreamsound.audio import load_audio, resample, validate_waveform

    if isinstance(audio, np.ndarray) or hasattr(audio, "detach"):
        wave = validate_waveform(audio, what="input waveform", allow_silence=True)
        if wave.ndim != 1:
            raise AudioError(f"input waveform: expected mono [n], got shape {wave.shape}")
        if input_rate is not None and input_rate != sample_rate:
            wave = resample(wave, input_rate, sample_rate, what="input waveform")
        return wave, "array", None
    text = str(audio)
    path = Path(text).expanduser()
    if parse_start(text) is not None and not path.exists():
        return generate_start(text, sample_rate=sample_rate, seed=seed), text, None
    # A silent file is accepted: the spectrogram domain can dream from silence (the waveform
    # domain then raises a clear error), and refusing it would hide that ability.
    wave = load_audio(path, sample_rate=sample_rate, allow_silence=True)
    return wave, str(path), path


def _is_silent(wave: np.ndarray) -> bool:
    from dreamsound.audio import SILENCE_PEAK

    return wave.size == 0 or float(np.max(np.abs(wave))) < SILENCE_PEAK


# ---------------------------------------------------------------------------------------------
# Targets and objectives
# ---------------------------------------------------------------------------------------------

_WEIGHTED_RE = re.compile(r"\s*(.+?)\s*:\s*([-+]?(?:\d+\.?\d*|\.\d+))\s*(?:,|$)")


def parse_target_spec(spec: str) -> list[tuple[str, float]]:
    """Split ``"violin:1,flute:0.5"`` into ``[("violin", 1.0), ("flute", 0.5)]``.

    A spec without ``:weight`` is one class of weight 1 (class names may contain commas, as in
    YAMNet's ``"Violin, fiddle"``). Weights may be negative (push away from a class).
    """
    text = str(spec).strip()
    if not text:
        raise TargetError("empty target; give a class name (see `dreamsound classes`)")
    terms, position = [], 0
    for match in _WEIGHTED_RE.finditer(text):
        if match.start() != position:
            break
        terms.append((match.group(1), float(match.group(2))))
        position = match.end()
    if terms and position == len(text):
        return terms
    if re.search(r":\s*[-+]?(?:\d+\.?\d*|\.\d+)\s*(,|$)", text):
        raise TargetError(f"cannot read the weighted target {text!r}; write it like "
                          "'violin:1,flute:0.5'")
    return [(text, 1.0)]


@dataclass(frozen=True)
class TargetTerm:
    """One class of a target objective: ``weight · mean-over-patches logit[index]``."""

    index: int
    name: str
    weight: float
    query: str


def resolve_targets(model: AudioClassifier,
                    target: str | int | Sequence[Any] | Mapping[str, float]) -> list[TargetTerm]:
    """Turn any accepted target form into :class:`TargetTerm` s.

    Accepted: a class name or index, a weighted spec ``"violin:1,flute:0.5"``, a mapping
    ``{"violin": 1, "flute": 0.5}``, or a sequence of names or ``(name, weight)`` pairs.
    """
    pairs: list[tuple[str, float]]
    if isinstance(target, Mapping):
        pairs = [(str(k), float(v)) for k, v in target.items()]
    elif isinstance(target, int | np.integer):
        pairs = [(str(int(target)), 1.0)]
    elif isinstance(target, str):
        pairs = parse_target_spec(target)
    else:
        pairs = []
        for item in target:
            if isinstance(item, tuple | list):
                pairs.append((str(item[0]), float(item[1])))
            else:
                pairs.append((str(item), 1.0))
    if not pairs:
        raise TargetError("no target class given")
    terms = []
    for query, weight in pairs:
        if not math.isfinite(weight) or weight == 0:
            raise TargetError(f"target {query!r}: the weight must be a finite non-zero number")
        index = model.resolve_class(query)
        terms.append(TargetTerm(index, model.class_names[index], weight, query))
    if not any(t.weight > 0 for t in terms):
        raise TargetError("at least one target needs a positive weight")
    return terms


class _StopForward(Exception):
    """Raised by a layer hook to skip the rest of the network (its output is not needed)."""


class Objective:
    """What a dream ascends, as a function of the log-mel ``[T, F]``.

    Parameters
    ----------
    model : AudioClassifier
    targets : list of TargetTerm, optional
        Ascend ``Σ weight · mean_patches(logit[index])``.
    layer : str, optional
        Ascend the mean squared activation of this named layer (``model.named_layers()``).
    channel : int, optional
        Only this channel (dimension 1 of the layer's output).

    Calling it returns ``(value, logits or None)``; for a layer objective the network stops at
    the layer (the rest is not computed) and ``logits`` is None.
    """

    def __init__(self, model: AudioClassifier, *, targets: list[TargetTerm] | None = None,
                 layer: str | None = None, channel: int | None = None):
        if (targets is None) == (layer is None):
            raise DreamsoundError("an objective needs exactly one of a target or a layer")
        if channel is not None and layer is None:
            raise TargetError("--channel needs --layer")
        self.model = model
        self.targets = targets or []
        self.layer = layer
        self.channel = channel
        self._module: torch.nn.Module | None = None
        if layer is not None:
            layers = model.named_layers()
            if layer not in layers:
                raise TargetError(f"{model.name} has no layer {layer!r}."
                                  + (did_you_mean(layer, layers)
                                     or f" Layers: {', '.join(layers)}"))
            self._module = layers[layer]

    @property
    def kind(self) -> str:
        return "layer" if self.layer is not None else "target"

    def __call__(self, log_mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self._module is None:
            logits = self.model.logits_from_log_mel(log_mel)
            value = sum(t.weight * logits[:, t.index].mean() for t in self.targets)
            return value, logits  # type: ignore[return-value]
        captured: list[torch.Tensor] = []

        def hook(_module: torch.nn.Module, _inputs: Any, output: Any) -> None:
            captured.append(output if isinstance(output, torch.Tensor) else output[0])
            raise _StopForward

        handle = self._module.register_forward_hook(hook)
        try:
            self.model.logits_from_log_mel(log_mel)
        except _StopForward:
            pass
        finally:
            handle.remove()
        if not captured:
            raise DreamsoundError(f"layer {self.layer!r} did not run in {self.model.name}'s "
                                  "forward pass")
        activation = captured[0]
        if self.channel is not None:
            if activation.dim() < 2 or not 0 <= self.channel < activation.shape[1]:
                size = activation.shape[1] if activation.dim() >= 2 else 0
                raise TargetError(f"layer {self.layer!r} has {size} channels; --channel "
                                  f"{self.channel} is out of range")
            activation = activation[:, self.channel]
        return activation.square().mean(), None

    def confidences(self, logits: torch.Tensor) -> list[float]:
        """Target confidence per target term (:func:`dreamsound.metrics.target_confidence`)."""
        scores = self.model.scores_from_logits(logits)
        return [metrics.target_confidence(scores, t.index) for t in self.targets]

    def confidence(self, logits: torch.Tensor | None) -> float | None:
        """The one confidence ``until`` is compared with: the minimum over positively weighted
        targets (so ``until`` means *every* wanted class got there); None for a layer."""
        if logits is None or not self.targets:
            return None
        values = self.confidences(logits)
        return min(v for v, t in zip(values, self.targets) if t.weight > 0)


# ---------------------------------------------------------------------------------------------
# Waveform update rules
# ---------------------------------------------------------------------------------------------


class StftGeometry:
    """Analysis/synthesis for the waveform rules, with the model front-end's STFT geometry.

    The signal is zero-padded by ``win_length`` samples on both sides before analysis, so every
    real sample lies where the overlap-added window is complete and :meth:`synthesise` of an
    unmodified :meth:`analyse` gives the input back to float rounding.
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

    def analyse(self, x: torch.Tensor) -> torch.Tensor:
        """Complex STFT ``[T, n_fft // 2 + 1]`` of ``x [n]`` (padded as described above)."""
        front, back = self._padding(x.shape[-1])
        return stft(F.pad(x, (front, back)), n_fft=self.n_fft, win_length=self.win_length,
                    hop_length=self.hop_length, window=self.window.to(x.dtype))

    def synthesise(self, spectrum: torch.Tensor, n: int) -> torch.Tensor:
        """Samples ``[n]`` from a spectrum made by :meth:`analyse` (least-squares overlap-add
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
    spectrum = geometry.analyse(signal)
    if mask.shape != spectrum.shape:
        raise ValueError(f"mask {tuple(mask.shape)} does not match the STFT "
                         f"{tuple(spectrum.shape)}")
    return geometry.synthesise(spectrum * mask.to(spectrum.real.dtype), signal.shape[-1])


def _rms(x: torch.Tensor) -> torch.Tensor:
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
            mask = hard_cut_mask(geometry.analyse(gradient).abs(), threshold)
            filtered = masked_resynthesis(geometry, x, mask)
            return filtered if rule == "filter" else x + step_size * filtered
        # Flipped: mask from the signal, applied to the gradient (the gradient keeps its phase).
        mask = hard_cut_mask(geometry.analyse(x).abs(), threshold)
        filtered = masked_resynthesis(geometry, gradient, mask)
        if rule == "filter":
            # The filtered gradient replaces the signal; match the signal's loudness so repeated
            # steps neither explode nor vanish.
            scale = _rms(x) / _rms(filtered).clamp(min=torch.finfo(x.dtype).tiny)
            return filtered * scale
        return x + step_size * level * filtered
    if rule == "target":
        if target_sound is None:
            raise DreamsoundError("the target rule needs a second sound (--target-sound FILE)")
        if target_sound.shape[-1] != n:
            raise ValueError(f"target sound has {target_sound.shape[-1]} samples, x has {n}")
        if not flip:
            # The gradient restricted to the target sound's spectral footprint.
            mask = hard_cut_mask(geometry.analyse(target_sound).abs(), threshold)
            return x + step_size * level * masked_resynthesis(geometry, gradient, mask)
        # Flipped: the target sound restricted to where the gradient is strong.
        mask = hard_cut_mask(geometry.analyse(gradient).abs(), threshold)
        return x + step_size * masked_resynthesis(geometry, target_sound, mask)
    raise DreamsoundError(f"unknown rule {rule!r}; choose one of {', '.join(RULES)}")


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


#: Largest change of one element per step, in units of the mean step (``normalize="mean"``).
MAX_ELEMENT_STEP = 8.0


# ---------------------------------------------------------------------------------------------
# Settings and results
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DreamSettings:
    """Every knob of a dream (see :func:`dream` for their meaning)."""

    domain: str = "spectrogram"
    rule: str = "additive"
    flip: bool = False
    steps: int = DEFAULT_STEPS
    step_size: float | None = None
    normalize: str = "mean"
    until: float | None = None
    max_rmse_db: float | None = None
    distance_weight: float = 0.0
    octaves: int = 1
    octave_scale: float = 1.4
    jitter: float = 0.0
    seed: int = 0
    mask_threshold: float = DEFAULT_MASK_THRESHOLD
    gl_iterations: int = DEFAULT_GL_ITERATIONS
    fit_iterations: int = DEFAULT_FIT_ITERATIONS
    limit: bool = True
    snapshot_every: int | None = None
    smooth: int = DEFAULT_SMOOTH
    until_rendered: bool = False

    @property
    def effective_step_size(self) -> float:
        return DEFAULT_STEP_SIZE[self.domain] if self.step_size is None else self.step_size

    def check(self) -> None:
        """Raise :class:`DreamsoundError` for inconsistent settings (one line each)."""
        if self.domain not in DOMAINS:
            raise DreamsoundError(f"unknown domain {self.domain!r}; choose "
                                  f"{' or '.join(DOMAINS)}")
        if self.rule not in RULES:
            raise DreamsoundError(f"unknown rule {self.rule!r}; choose one of {', '.join(RULES)}")
        if self.domain == "spectrogram" and (self.rule != "additive" or self.flip):
            raise DreamsoundError("--rule and --flip belong to the waveform domain; add "
                                  "--domain waveform")
        if self.flip and self.rule == "additive":
            raise DreamsoundError("--flip applies to the filter, filter-add and target rules")
        if self.normalize not in NORMALIZATIONS:
            raise DreamsoundError(f"unknown normalisation {self.normalize!r}; choose mean or max")
        if self.steps < 0:
            raise DreamsoundError(f"--steps must be >= 0, got {self.steps}")
        if not (math.isfinite(self.effective_step_size) and self.effective_step_size > 0):
            raise DreamsoundError(f"--step-size must be > 0, got {self.step_size}")
        if self.until is not None and not 0.0 < self.until <= 1.0:
            raise DreamsoundError(f"--until must be a confidence in (0, 1], got {self.until}")
        if self.max_rmse_db is not None and not self.max_rmse_db > 0:
            raise DreamsoundError(f"--max-rmse-db must be > 0 dB, got {self.max_rmse_db}")
        if not (math.isfinite(self.distance_weight) and self.distance_weight >= 0):
            raise DreamsoundError(f"the distance weight must be >= 0, got {self.distance_weight}")
        if self.octaves < 1:
            raise DreamsoundError(f"--octaves must be >= 1, got {self.octaves}")
        if self.octaves > 1 and self.domain != "spectrogram":
            raise DreamsoundError("--octaves needs the spectrogram domain")
        if not self.octave_scale > 1:
            raise DreamsoundError(f"--octave-scale must be > 1, got {self.octave_scale}")
        if self.jitter < 0:
            raise DreamsoundError(f"--jitter must be >= 0 seconds, got {self.jitter}")
        if self.gl_iterations < 0:
            raise DreamsoundError(f"Griffin-Lim iterations must be >= 0, got {self.gl_iterations}")
        if self.fit_iterations < 0:
            raise DreamsoundError(f"fit iterations must be >= 0, got {self.fit_iterations}")
        if self.until_rendered and self.until is None:
            raise DreamsoundError("--until-rendered needs --until")
        if self.smooth < 0:
            raise DreamsoundError(f"--smooth must be >= 0, got {self.smooth}")
        if self.snapshot_every is not None and self.snapshot_every < 1:
            raise DreamsoundError(f"--save-every must be >= 1, got {self.snapshot_every}")

    def to_json(self) -> dict:
        out = dict(self.__dict__)
        out["step_size"] = self.effective_step_size
        out["step_size_unit"] = "dB" if self.domain == "spectrogram" else "x input RMS"
        return out


@dataclass
class DreamResult:
    """What :func:`dream` gives back.

    Attributes
    ----------
    audio : ndarray float32 [n]
        The dreamed sound at :attr:`sample_rate` (peak-limited to -1 dBFS unless asked not to).
    sample_rate : int
        Hz (the model's rate).
    original : ndarray float32 [n]
        The input at :attr:`sample_rate`.
    gradient_audio : ndarray float32 [n]
        The sonified gradient of the first step (see :mod:`dreamsound.sonify`), peak -1 dBFS.
    spectrograms : dict of str -> ndarray [T, F]
        ``"original"``, ``"dreamed"``, ``"rendered"``: the model's log-mels (natural log of the
        mel magnitude + the model's floor; :func:`dreamsound.metrics.mel_db` gives dB);
        ``"gradient"``: the first step's gradient as a log-mel-shaped array (spectrogram domain:
        d objective / d log-mel; waveform domain: the log-mel of the gradient waveform).
    frame_rate : float
        Spectrogram frames per second.
    band_hz : ndarray [F]
        Centre frequency of each mel band (Hz), for axes.
    log_offset : float
        The model's log-mel floor (``ln(mel + log_offset)``), for dB conversions.
    report : dict
        See the module docstring for its keys.
    gradient : ndarray
        The raw first-step gradient: ``[T, F]`` (spectrogram) or ``[n]`` (waveform).
    """

    audio: np.ndarray
    sample_rate: int
    original: np.ndarray
    gradient_audio: np.ndarray
    spectrograms: dict[str, np.ndarray]
    frame_rate: float
    band_hz: np.ndarray
    log_offset: float
    report: dict
    gradient: np.ndarray
    input_path: Path | None = None
    snapshots: list[tuple[int, np.ndarray]] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------


@dataclass
class _RunState:
    """The loop's outcome (internal)."""

    dreamed_log_mel: torch.Tensor
    dreamed_wave: torch.Tensor | None
    first_gradient: torch.Tensor | None
    steps_done: int
    stopped: str
    step_seconds: list[float]


def band_centres_hz(model: AudioClassifier) -> np.ndarray:
    """Centre frequency of each mel band (Hz): the weighted mean frequency of its triangle."""
    c = model.front_end.config
    matrix = model.front_end.mel_matrix.detach().double().cpu().numpy()  # [bins, mels]
    bin_hz = np.linspace(0.0, c.sample_rate / 2.0, matrix.shape[0])
    weight = matrix.sum(axis=0)
    return (bin_hz @ matrix) / np.where(weight > 0, weight, 1.0)


class _Engine:
    """One dream of one waveform with one objective (internal; use :func:`dream`)."""

    def __init__(self, model: AudioClassifier, objective: Objective, settings: DreamSettings, *,
                 target_sound: np.ndarray | None = None,
                 progress: ProgressCallback | None = None,
                 on_snapshot: SnapshotCallback | None = None,
                 on_gradient: GradientCallback | None = None):
        self.model = model
        self.objective = objective
        self.settings = settings
        self.progress = progress
        self.on_snapshot = on_snapshot
        self.on_gradient = on_gradient
        self.target_sound = target_sound
        self.device = model.device
        self.log_offset = model.front_end.config.log_offset
        # One generator drives every random choice (jitter, random phase): same seed, same bytes.
        self.generator = torch.Generator().manual_seed(int(settings.seed))
        self.total_steps = settings.steps * settings.octaves
        self.last_render_check: int | None = None
        #: ``(steps done, audio)`` rendered by the ``until_rendered`` check that stopped the loop.
        self.kept_render: tuple[int, torch.Tensor] | None = None
        #: ``(audio, its log-mel)`` of the last ``until_rendered`` check that fell short.
        self.short_render: tuple[torch.Tensor, torch.Tensor] | None = None
        #: Whose phase rendering starts from (spectrogram domain): the input, or the last render
        #: the dream went on from; None for a silent start (random phase).
        self.render_reference: torch.Tensor | None = None

    # -- helpers ------------------------------------------------------------------------------
    def _draw_shift(self, limit: int) -> int:
        if limit <= 0:
            return 0
        return int(torch.randint(-limit, limit + 1, (1,), generator=self.generator))

    def _distance_penalty(self, log_mel: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        # metrics.mse_db2 in differentiable form (metrics.mel_db is linear, so this is exactly
        # the reported mse_db2; a test checks that).
        difference = (metrics.mel_db(log_mel, log_offset=self.log_offset)
                      - metrics.mel_db(reference, log_offset=self.log_offset))
        return difference.square().mean()

    def _gradient(self, total: torch.Tensor, current: torch.Tensor, step: int) -> torch.Tensor:
        """d total / d current (detached), shown to the ``on_gradient`` callback."""
        (gradient,) = torch.autograd.grad(total, current)
        gradient = gradient.detach()
        if self.on_gradient is not None:
            self.on_gradient(step, gradient)
        return gradient

    def _rmse(self, log_mel: torch.Tensor, reference: torch.Tensor) -> float:
        return metrics.rmse_db(log_mel, reference, log_offset=self.log_offset)

    def _report_step(self, step: int, value: torch.Tensor, logits: torch.Tensor | None,
                     rmse: float | None, started: float) -> None:
        if self.progress is not None:
            info = {"objective": float(value), "confidence": self.objective.confidence(logits),
                    "rmse_db": rmse, "seconds": time.perf_counter() - started}
            self.progress(step, self.total_steps, info)

    def render(self, log_mel: torch.Tensor, reference: torch.Tensor | None, n: int
               ) -> torch.Tensor:
        """Audio ``[n]`` for a dreamed log-mel (spectrogram domain)."""
        generator = torch.Generator(device=self.device).manual_seed(int(self.settings.seed))
        return self.model.front_end.invert(
            log_mel, reference_waveform=reference, n_iter=self.settings.gl_iterations,
            fit_iter=self.settings.fit_iterations,
            generator=generator, length=n)

    # -- spectrogram domain -------------------------------------------------------------------
    def run_spectrogram(self, wave: torch.Tensor, silent: bool) -> _RunState:
        s = self.settings
        cfg = self.model.front_end.config
        with torch.no_grad():
            original = self.model.log_mel(wave)
        n_frames = original.shape[-2]
        # Frames that start before the input ends hold real samples.
        real_frames = min(n_frames, math.ceil(wave.shape[-1] / cfg.hop_length))
        floor = math.log(cfg.log_offset)
        step_nepers = s.effective_step_size / metrics.DB_PER_NEPER
        jitter_frames = round(s.jitter * cfg.sample_rate / cfg.hop_length)
        self.render_reference = None if silent else wave
        detail = torch.zeros_like(original)
        first_gradient: torch.Tensor | None = None
        step_seconds: list[float] = []
        done, stopped = 0, "steps"
        for octave in range(s.octaves - 1, -1, -1):
            scale = s.octave_scale ** -octave
            size = max(cfg.patch_frames, round(n_frames * scale))
            base = _resize_time(original, size)
            current = (base + _resize_time(detail, size)).detach()
            last_octave = octave == 0
            for _ in range(s.steps):
                started = time.perf_counter()
                shift = self._draw_shift(jitter_frames)
                current.requires_grad_(True)
                seen = torch.roll(current, shift, dims=-2) if shift else current
                value, logits = self.objective(seen)
                if last_octave and s.until is not None:
                    confidence = self.objective.confidence(logits) if not shift else \
                        self._confidence_of(current)
                    if confidence is not None and confidence >= s.until:
                        if self._rendered_reaches(current, wave, done):
                            stopped = "until"
                            current = current.detach()
                            break
                        if self.short_render is not None:
                            # The sound fell short of the dream: part of what the dream added
                            # no sound carries, and dreaming on from there drifts further into
                            # such spectrograms (a voice -> clarinet dream reached 1.00 on its
                            # spectrogram while its rendering sank to 0.08). Go on from the
                            # rendered sound instead: its log-mel, and its phase for the next
                            # rendering, so every step builds on what can be heard.
                            self.render_reference, current = self.short_render
                            self.short_render = None
                            continue
                total = value
                if s.distance_weight > 0:
                    total = value - s.distance_weight * self._distance_penalty(current, base)
                gradient = self._gradient(total, current, done + 1)
                if first_gradient is None:
                    first_gradient = gradient.clone()
                with torch.no_grad():
                    # Frames made only of the end padding cannot be rendered (the audio stops
                    # at the input's length): leave them alone.
                    gradient = smooth_gradient(gradient, s.smooth)
                    keep = _kept_frames(size, n_frames, real_frames)
                    if keep < size:
                        gradient = torch.cat([gradient[:keep],
                                              torch.zeros_like(gradient[keep:])])
                    current = current.detach() + step_nepers * normalize_gradient(
                        gradient, s.normalize, rows=keep)
                    # No sound is quieter than the front-end's floor ln(log_offset); a log-mel
                    # below it could not be rendered.
                    current = current.clamp(min=floor)
                    rmse = self._rmse(current, base)
                    if s.max_rmse_db is not None and rmse > s.max_rmse_db:
                        # mel_db is linear in the log-mel: scaling the change scales the rmse
                        # (and keeps it above the floor: both ends are).
                        current = base + (current - base) * (s.max_rmse_db / rmse)
                        rmse = s.max_rmse_db
                done += 1
                step_seconds.append(time.perf_counter() - started)
                self._report_step(done, value.detach(), logits, rmse, started)
                if (last_octave and self.on_snapshot is not None and s.snapshot_every
                        and done % s.snapshot_every == 0):
                    audio = self.render(current, self.render_reference, wave.shape[-1])
                    self.on_snapshot(done, audio.cpu().numpy())
            detail = (current.detach() - base)
            if stopped == "until":
                break
        dreamed = original + _resize_time(detail, n_frames)
        return _RunState(dreamed.detach(), None, first_gradient, done, stopped, step_seconds)

    def _rendered_reaches(self, log_mel: torch.Tensor, wave: torch.Tensor, step: int) -> bool:
        """With ``until_rendered``: render the current dream (peak-limited like the output) and
        say whether *its* confidence reaches ``until``; the render is kept for the result, or
        as :attr:`short_render` when it falls short. Rendering costs a Griffin-Lim run and a
        log-mel fit, so after a miss the next check waits :data:`UNTIL_RENDERED_EVERY` steps.
        Without ``until_rendered``: always True."""
        s = self.settings
        if not s.until_rendered:
            return True
        if self.last_render_check is not None and \
                step - self.last_render_check < UNTIL_RENDERED_EVERY:
            return False
        self.last_render_check = step
        with torch.no_grad():
            audio = self.render(log_mel.detach(), self.render_reference, wave.shape[-1])
            audio_np = audio.cpu().numpy().astype(np.float32)
            if not np.isfinite(audio_np).all():
                return False
            if s.limit:
                audio_np = limit_peaks(audio_np, self.model.sample_rate)
            tensor = torch.from_numpy(audio_np).to(self.device)
            heard = self.model.log_mel(tensor)
        confidence = self._confidence_of(heard)
        if confidence is not None and confidence >= float(s.until):  # type: ignore[arg-type]
            self.kept_render = (step, audio)
            return True
        self.short_render = (tensor, heard)
        return False

    def _confidence_of(self, log_mel: torch.Tensor) -> float | None:
        with torch.no_grad():
            return self.objective.confidence(self.model.logits_from_log_mel(log_mel.detach()))

    # -- waveform domain ----------------------------------------------------------------------
    def run_waveform(self, wave: torch.Tensor) -> _RunState:
        s = self.settings
        cfg = self.model.front_end.config
        geometry = StftGeometry.of(self.model)
        with torch.no_grad():
            original_log_mel = self.model.log_mel(wave)
        level = max(float(_rms(wave)), _LEVEL_FLOOR)
        target = None
        if self.target_sound is not None:
            target = torch.from_numpy(self.target_sound).to(self.device)
        jitter_hops = round(s.jitter * cfg.sample_rate / cfg.hop_length)
        step_size = s.effective_step_size
        current = wave.clone()
        first_gradient: torch.Tensor | None = None
        step_seconds: list[float] = []
        done, stopped = 0, "steps"
        for _ in range(s.steps):
            started = time.perf_counter()
            # Roll by whole hops so the rolled log-mel is the rolled log-mel of the original.
            shift = self._draw_shift(jitter_hops) * cfg.hop_length
            current.requires_grad_(True)
            seen = torch.roll(current, shift) if shift else current
            log_mel = self.model.log_mel(seen)
            value, logits = self.objective(log_mel)
            if s.until is not None:
                confidence = self.objective.confidence(logits) if not shift else \
                    self._confidence_of(self.model.log_mel(current.detach()))
                if confidence is not None and confidence >= s.until:
                    stopped = "until"
                    break
            total = value
            if s.distance_weight > 0:
                unrolled = log_mel if not shift else self.model.log_mel(current)
                total = value - s.distance_weight * self._distance_penalty(unrolled,
                                                                           original_log_mel)
            gradient = self._gradient(total, current, done + 1)
            if first_gradient is None:
                first_gradient = gradient.clone()
            with torch.no_grad():
                updated = waveform_update(current.detach(), normalize_gradient(gradient,
                                                                               s.normalize),
                                          rule=s.rule, step_size=step_size, level=level,
                                          geometry=geometry, threshold=s.mask_threshold,
                                          flip=s.flip, target_sound=target)
                if not torch.isfinite(updated).all():
                    raise DreamsoundError("the dream diverged (NaN/Inf samples); lower "
                                          "--step-size")
                # The distance of the state this step's forward pass saw (free), unless the
                # bound needs the updated one (one more front-end pass).
                rmse = self._rmse(log_mel.detach(), original_log_mel) if not shift else None
                if s.max_rmse_db is not None:
                    rmse = self._rmse(self.model.log_mel(updated), original_log_mel)
                    if rmse > s.max_rmse_db:
                        updated, rmse = self._pull_back(wave, updated, original_log_mel, rmse)
                current = updated
            done += 1
            step_seconds.append(time.perf_counter() - started)
            self._report_step(done, value.detach(), logits, rmse, started)
            if self.on_snapshot is not None and s.snapshot_every and done % s.snapshot_every == 0:
                self.on_snapshot(done, current.detach().cpu().numpy())
        current = current.detach()
        with torch.no_grad():
            dreamed_log_mel = self.model.log_mel(current)
        return _RunState(dreamed_log_mel, current, first_gradient, done, stopped, step_seconds)

    def _pull_back(self, original: torch.Tensor, updated: torch.Tensor,
                   original_log_mel: torch.Tensor, rmse: float) -> tuple[torch.Tensor, float]:
        """Scale the change ``updated - original`` until the log-mel is within the dB bound.

        The dB distance of a waveform change is not linear in its size, so this bisects the
        scale factor in [0, 1] (12 halvings: the bound is met to ~0.03 %).
        """
        bound = float(self.settings.max_rmse_db)  # type: ignore[arg-type]
        change = updated - original
        low, high = 0.0, 1.0
        best, best_rmse = original, 0.0
        for _ in range(12):
            middle = 0.5 * (low + high)
            candidate = original + middle * change
            value = self._rmse(self.model.log_mel(candidate), original_log_mel)
            if value <= bound:
                low, best, best_rmse = middle, candidate, value
            else:
                high = middle
        return best, best_rmse


def _kept_frames(size: int, n_frames: int, real_frames: int) -> int:
    """How many of ``size`` frames (a time scale of ``size / n_frames``) hold real samples."""
    if real_frames >= n_frames:
        return size
    return min(size, math.ceil(real_frames * size / n_frames))


def _resize_time(log_mel: torch.Tensor, frames: int) -> torch.Tensor:
    """Linearly interpolate ``[T, F]`` to ``[frames, F]`` along time (identity if equal)."""
    if log_mel.shape[-2] == frames:
        return log_mel
    resized = F.interpolate(log_mel.T[None], size=frames, mode="linear", align_corners=True)
    return resized[0].T.contiguous()


def _top(model: AudioClassifier, logits: torch.Tensor, k: int = 3) -> list[dict]:
    scores = model.scores_from_logits(logits).mean(dim=0)
    return [{"name": name, "score": score}
            for name, score in metrics.top_k(scores, model.class_names, k)]


def _analyse(model: AudioClassifier, log_mel: torch.Tensor, objective: Objective
             ) -> dict[str, Any]:
    """Scores of a log-mel: top-3, per-target confidences, success, objective value."""
    with torch.no_grad():
        logits = model.logits_from_log_mel(log_mel)
        value, _ = objective(log_mel)
    scores = model.scores_from_logits(logits)
    clip = scores.mean(dim=0)
    out: dict[str, Any] = {"top": _top(model, logits), "objective": float(value),
                           "confidence": objective.confidence(logits),
                           "confidences": objective.confidences(logits) if objective.targets
                           else [], "success": None}
    positives = [t for t in objective.targets if t.weight > 0]
    if len(positives) == 1:
        out["success"] = metrics.is_success(clip, positives[0].index)
    return out


def analyse_waveform(model: AudioClassifier, waveform: np.ndarray, objective: Objective,
                     *, n_frames: int | None = None) -> tuple[dict[str, Any], torch.Tensor]:
    """``(_analyse result, log-mel)`` of a waveform at the model's rate; the log-mel is trimmed
    or padded (with the floor) to ``n_frames`` so that distances compare like with like."""
    wave = torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32)).to(model.device)
    with torch.no_grad():
        log_mel = model.log_mel(wave)
    if n_frames is not None and log_mel.shape[-2] != n_frames:
        if log_mel.shape[-2] > n_frames:
            log_mel = log_mel[:n_frames]
        else:
            floor = math.log(model.front_end.config.log_offset)
            log_mel = F.pad(log_mel, (0, 0, 0, n_frames - log_mel.shape[-2]), value=floor)
    return _analyse(model, log_mel, objective), log_mel


def dream(audio: str | Path | np.ndarray, *, model: str | AudioClassifier = DEFAULT_MODEL,
          target: str | int | Sequence[Any] | Mapping[str, float] | None = None,
          layer: str | None = None, channel: int | None = None,
          domain: str = "spectrogram", rule: str = "additive", flip: bool = False,
          target_sound: str | Path | np.ndarray | None = None,
          steps: int = DEFAULT_STEPS, step_size: float | None = None, normalize: str = "mean",
          until: float | None = None, max_rmse_db: float | None = None,
          distance_weight: float = 0.0, octaves: int = 1, octave_scale: float = 1.4,
          jitter: float = 0.0, seed: int = 0, mask_threshold: float = DEFAULT_MASK_THRESHOLD,
          gl_iterations: int = DEFAULT_GL_ITERATIONS,
          fit_iterations: int = DEFAULT_FIT_ITERATIONS, limit: bool = True,
          snapshot_every: int | None = None, smooth: int = DEFAULT_SMOOTH,
          until_rendered: bool = False,
          weights: str | Path | None = None,
          device: str | None = None, sample_rate: int | None = None,
          progress: ProgressCallback | None = None,
          on_snapshot: SnapshotCallback | None = None,
          on_gradient: GradientCallback | None = None) -> DreamResult:
    """Dream a sound toward a class (or a layer's activation) of a classifier.

    Parameters
    ----------
    audio : path, str or ndarray [n]
        A sound file; a generated start ``"noise:3s"``, ``"silence:2s"``, ``"sine:440:2s"``
        (dreaming from nothing); or a mono float waveform at ``sample_rate`` Hz.
    model : str or AudioClassifier
        Registry name (default ``"instrument"``) or a loaded model (load once for many dreams).
    target : str, int, mapping or sequence, optional
        Class(es) to ascend: ``"violin"``, ``"violin:1,flute:0.5"``, ``{"violin": 1}``.
        With neither ``target`` nor ``layer``: the input's own top class.
    layer : str, optional
        Ascend this layer's activation energy instead (``model.named_layers()``).
    channel : int, optional
        Only this channel of ``layer``.
    domain : {"spectrogram", "waveform"}
    rule : {"additive", "filter", "filter-add", "target"}
        Waveform-domain update rule (module docstring).
    flip : bool
        Swap the roles of mask and signal in the filter rules.
    target_sound : path or ndarray, optional
        The second sound of the ``target`` rule (looped or trimmed to the input's length).
    steps : int
        Gradient steps (per octave).
    step_size : float, optional
        dB per step (spectrogram) or fraction of the input RMS (waveform); default
        :data:`DEFAULT_STEP_SIZE`.
    normalize : {"mean", "max"}
        Gradient normalisation: ``g / mean|g|`` or ``g / max|g|``.
    until : float, optional
        Stop once the target confidence (0..1) of the dreamed spectrogram reaches this.
    until_rendered : bool
        With ``until``: stop only once the *rendered* audio (peak-limited, re-analysed) reaches
        it too (spectrogram domain; it renders when the dreamed spectrogram gets there, then
        every :data:`UNTIL_RENDERED_EVERY` steps). What a listener gets then meets the bar,
        usually at a slightly larger distance. In the waveform domain the dreamed samples are
        the rendered audio.
    max_rmse_db : float, optional
        Keep the dreamed log-mel within this rmse (dB) of the original.
    distance_weight : float
        λ of the penalty ``- λ · mse_db2(dreamed, original)`` added to the objective.
    octaves, octave_scale : int, float
        Coarse-to-fine dreaming on ``octaves`` time scales, each ``octave_scale`` times longer.
    jitter : float
        Maximum random time roll per step, seconds (0: none).
    seed : int
        Seeds every random choice.
    mask_threshold : float
        Hard-cut threshold of the waveform masks (fraction of the maximum magnitude).
    gl_iterations : int
        Fast Griffin-Lim iterations when rendering the spectrogram domain.
    fit_iterations : int
        Then this many steps fitting the audio's log-mel to the dreamed one
        (:meth:`dreamsound.spectral.LogMelFrontEnd.fit_waveform`; 0: none).
    limit : bool
        Peak-limit the result to -1 dBFS (only attenuates).
    snapshot_every : int, optional
        Call ``on_snapshot(step, audio)`` every this many steps.
    smooth : int
        Passes of a ``[1, 2, 1]`` blur of the log-mel gradient over time and bands before each
        step (spectrogram domain; 0 = raw gradient). See :func:`smooth_gradient`.
    weights, device
        For :func:`dreamsound.load_model` when ``model`` is a name.
    sample_rate : int, optional
        Rate of an ndarray ``audio`` (default: the model's rate).
    progress : callable(step, total, info), optional
        After each step. ``info``: ``objective`` and ``confidence`` of the state the step's
        forward pass saw; ``rmse_db`` after the update (spectrogram domain, or with
        ``max_rmse_db``), else of the forward's state (None when jittered); ``seconds`` the
        step's wall time.
    on_snapshot : callable(step, audio ndarray [n]), optional
    on_gradient : callable(step, gradient Tensor), optional
        The raw gradient of each step (used by :func:`dreamsound.sonify`).

    Returns
    -------
    DreamResult
    """
    started = time.perf_counter()
    settings = DreamSettings(domain=domain, rule=rule, flip=flip, steps=int(steps),
                             step_size=step_size, normalize=normalize, until=until,
                             max_rmse_db=max_rmse_db, distance_weight=float(distance_weight),
                             octaves=int(octaves), octave_scale=float(octave_scale),
                             jitter=float(jitter), seed=int(seed),
                             mask_threshold=float(mask_threshold),
                             gl_iterations=int(gl_iterations),
                             fit_iterations=int(fit_iterations), limit=bool(limit),
                             snapshot_every=snapshot_every, smooth=int(smooth),
                             until_rendered=bool(until_rendered))
    settings.check()
    if target is not None and layer is not None:
        raise TargetError("give a target class or a layer, not both")
    if until is not None and layer is not None:
        raise TargetError("--until needs a target class (a layer has no confidence)")
    if rule == "target" and target_sound is None:
        raise DreamsoundError("the target rule needs a second sound: --target-sound FILE")
    if target_sound is not None and rule != "target":
        raise DreamsoundError("--target-sound is used by the target rule only; add --rule target")

    net = model if isinstance(model, AudioClassifier) else load_model(model, weights, device)
    rate = net.sample_rate
    wave_np, label, path = _load_input(audio, sample_rate=rate, input_rate=sample_rate,
                                       seed=settings.seed)
    silent = _is_silent(wave_np)
    if silent:
        log.warning("%s is silent: dreaming from silence (random initial phase)", label)
        if domain == "waveform":
            raise AudioError(f"{label}: is silent; the waveform domain cannot grow a sound from "
                             "digital silence (its gradient is zero). Use --domain spectrogram "
                             "or start from noise (noise:3s)")
    wave = torch.from_numpy(wave_np).to(net.device)

    objective_kind = "layer" if layer is not None else "target" if target is not None \
        else "top-class"
    with torch.no_grad():
        original_log_mel = net.log_mel(wave)
        original_logits = net.logits_from_log_mel(original_log_mel)
    if layer is not None:
        objective = Objective(net, layer=layer, channel=channel)
    else:
        if channel is not None:
            raise TargetError("--channel needs --layer")
        if target is None:
            index = int(net.scores_from_logits(original_logits).mean(dim=0).argmax())
            target = index
        objective = Objective(net, targets=resolve_targets(net, target))

    target_wave = None
    if target_sound is not None:
        target_wave, _, _ = _load_input(target_sound, sample_rate=rate, input_rate=sample_rate,
                                        seed=settings.seed)
        target_wave = _match_length(target_wave, wave_np.shape[0])
        if _is_silent(target_wave):
            raise AudioError("the target sound is silent; its mask would be empty")
        # Match its loudness to the input so step sizes mean the same with every target sound.
        input_rms = max(float(np.sqrt(np.mean(wave_np.astype(np.float64) ** 2))), _LEVEL_FLOOR)
        target_rms = float(np.sqrt(np.mean(target_wave.astype(np.float64) ** 2)))
        target_wave = (target_wave * (input_rms / target_rms)).astype(np.float32)

    snapshots: list[tuple[int, np.ndarray]] = []

    def keep_snapshot(step: int, audio_np: np.ndarray) -> None:
        audio_np = np.asarray(audio_np, dtype=np.float32)
        if settings.limit and np.isfinite(audio_np).all():
            audio_np = limit_peaks(audio_np, rate)
        snapshots.append((step, audio_np))
        if on_snapshot is not None:
            on_snapshot(step, audio_np)

    engine = _Engine(net, objective, settings, target_sound=target_wave, progress=progress,
                     on_snapshot=keep_snapshot if snapshot_every else None,
                     on_gradient=on_gradient)
    before = _analyse(net, original_log_mel, objective)
    if domain == "spectrogram":
        state = engine.run_spectrogram(wave, silent)
        if engine.kept_render is not None and engine.kept_render[0] == state.steps_done:
            rendered = engine.kept_render[1]  # the until_rendered check already rendered it
        else:
            with torch.no_grad():
                rendered = engine.render(state.dreamed_log_mel, engine.render_reference,
                                         wave.shape[-1])
    else:
        state = engine.run_waveform(wave)
        rendered = state.dreamed_wave  # type: ignore[assignment]
    after = _analyse(net, state.dreamed_log_mel, objective)

    from dreamsound.sonify import gradient_to_audio

    rendered_np = rendered.detach().cpu().numpy().astype(np.float32)
    if not np.isfinite(rendered_np).all():
        raise DreamsoundError("the rendered audio holds NaN/Inf samples; lower --step-size")
    if settings.limit:
        rendered_np = limit_peaks(rendered_np, rate)
    n_frames = original_log_mel.shape[-2]
    rendered_analysis, rendered_log_mel = analyse_waveform(net, rendered_np, objective,
                                                           n_frames=n_frames)
    first_gradient = state.first_gradient
    if first_gradient is None:  # zero steps: the gradient at the original, for the outputs
        first_gradient = _gradient_at(net, objective, wave, original_log_mel, domain)
    gradient_audio = gradient_to_audio(first_gradient, model=net, domain=domain,
                                       reference=None if silent else wave,
                                       length=wave.shape[-1], seed=settings.seed)
    if domain == "spectrogram":
        gradient_view = first_gradient.cpu().numpy()
    else:
        with torch.no_grad():
            gradient_view = net.log_mel(first_gradient / first_gradient.abs().max().clamp(
                min=torch.finfo(first_gradient.dtype).tiny)).cpu().numpy()

    seconds = time.perf_counter() - started
    lo = net.front_end.config.log_offset
    report: dict[str, Any] = {
        "model": net.name,
        "input": label,
        "objective": objective_kind,
        "target": " + ".join(t.name for t in objective.targets) if objective.targets else None,
        "targets": [{"name": t.name, "index": t.index, "weight": t.weight,
                     "confidence_before": before["confidences"][i],
                     "confidence_after": after["confidences"][i],
                     "confidence_rendered": rendered_analysis["confidences"][i]}
                    for i, t in enumerate(objective.targets)],
        "layer": layer,
        "channel": channel,
        "domain": domain,
        "rule": rule if domain == "waveform" else None,
        "flip": flip,
        "steps": state.steps_done,
        "steps_requested": settings.steps,
        "stopped": state.stopped,
        "seconds": seconds,
        "seconds_per_step": (float(np.mean(state.step_seconds)) if state.step_seconds
                             else None),
        "confidence_before": before["confidence"],
        "confidence_after": after["confidence"],
        "confidence_rendered": rendered_analysis["confidence"],
        "rendered_from": "memory",
        "success_after": after["success"],
        "success_rendered": rendered_analysis["success"],
        "top_before": before["top"],
        "top_after": after["top"],
        "top_rendered": rendered_analysis["top"],
        "objective_before": before["objective"],
        "objective_after": after["objective"],
        "rmse_db": metrics.rmse_db(original_log_mel, state.dreamed_log_mel, log_offset=lo),
        "mse_db2": metrics.mse_db2(original_log_mel, state.dreamed_log_mel, log_offset=lo),
        "rmse_db_rendered": metrics.rmse_db(original_log_mel, rendered_log_mel, log_offset=lo),
        "mse_db2_rendered": metrics.mse_db2(original_log_mel, rendered_log_mel, log_offset=lo),
        "sample_rate": rate,
        "duration_s": wave_np.shape[0] / rate,
        "settings": settings.to_json(),
        "outputs": {},
    }
    cfg = net.front_end.config
    return DreamResult(
        audio=rendered_np, sample_rate=rate, original=wave_np, gradient_audio=gradient_audio,
        spectrograms={"original": original_log_mel.cpu().numpy(),
                      "dreamed": state.dreamed_log_mel.cpu().numpy(),
                      "rendered": rendered_log_mel.cpu().numpy(),
                      "gradient": gradient_view},
        frame_rate=cfg.sample_rate / cfg.hop_length, band_hz=band_centres_hz(net),
        log_offset=cfg.log_offset,
        report=report, gradient=first_gradient.cpu().numpy(), input_path=path,
        snapshots=snapshots)


#: Look-ahead / hold of the peak limiter (seconds): the gain is lowered this long before a peak
#: and released over the same time after it.
LIMITER_WINDOW_S = 0.01


def limit_peaks(waveform: np.ndarray, sample_rate: int, *, ceiling_dbfs: float = LIMIT_DBFS,
                window_s: float = LIMITER_WINDOW_S) -> np.ndarray:
    """A look-ahead peak limiter: no sample above ``ceiling_dbfs``, the rest left at its level.

    Scaling the whole file down by its loudest overshoot (a normaliser) would make a dream that
    raised a few peaks quieter everywhere, which the model hears too (a log-mel is not scale
    invariant). Instead the gain needed at each sample, ``min(1, ceiling / |x|)``, is spread by a
    running minimum over ``±window_s`` and smoothed by a Hann window of the same half-width:
    every sample within the window of a peak is at most that peak's gain, so the smoothed gain
    still brings the peak under the ceiling, and the gain changes smoothly (no clicks).

    Parameters
    ----------
    waveform : ndarray float32 [n]
    sample_rate : int
        Hz.
    ceiling_dbfs : float
        Peak ceiling, dBFS (-1 by default).
    window_s : float
        Look-ahead and release, seconds.

    Returns
    -------
    ndarray float32 [n]
        Unchanged when its peak is already under the ceiling.
    """
    from scipy.ndimage import minimum_filter1d

    data = np.asarray(waveform, dtype=np.float64)
    ceiling = 10.0 ** (ceiling_dbfs / 20.0)
    magnitude = np.abs(data)
    if data.size == 0 or float(magnitude.max()) <= ceiling:
        return np.asarray(waveform, dtype=np.float32)
    half = max(1, round(window_s * sample_rate))
    needed = np.minimum(1.0, ceiling / np.maximum(magnitude, 1e-30))
    held = minimum_filter1d(needed, size=2 * half + 1, mode="nearest")
    kernel = np.hanning(2 * half + 1)
    kernel /= kernel.sum()
    gain = np.convolve(np.pad(held, half, mode="edge"), kernel, mode="valid")
    limited = data * np.minimum(gain, 1.0)
    # Float rounding can leave a peak a hair over the ceiling; the clip only catches that.
    return np.clip(limited, -ceiling, ceiling).astype(np.float32)


def _match_length(wave: np.ndarray, n: int) -> np.ndarray:
    """Loop or trim ``wave`` to ``n`` samples."""
    if wave.shape[0] >= n:
        return wave[:n]
    return np.tile(wave, math.ceil(n / wave.shape[0]))[:n]


def _gradient_at(model: AudioClassifier, objective: Objective, wave: torch.Tensor,
                 log_mel: torch.Tensor, domain: str) -> torch.Tensor:
    """The objective's gradient at the original (log-mel or samples)."""
    variable = (log_mel if domain == "spectrogram" else wave).detach().clone().requires_grad_(True)
    seen = variable if domain == "spectrogram" else model.log_mel(variable)
    value, _ = objective(seen)
    (gradient,) = torch.autograd.grad(value, variable)
    return gradient.detach()


# ---------------------------------------------------------------------------------------------
# Output files
# ---------------------------------------------------------------------------------------------

_AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".aif", ".aiff", ".w64", ".caf"}


def slug(text: str) -> str:
    """A file-name-safe version of a class or layer name (``"Violin, fiddle"`` -> ``violin``)."""
    first = str(text).split(",")[0]
    cleaned = re.sub(r"[^a-z0-9+]+", "_", first.lower()).strip("_")
    return cleaned or "dream"


def dream_name(result_or_report: DreamResult | dict, *, query: str | None = None) -> str:
    """The ``dream-...`` part of default output names: ``dream-violin``, ``dream-violin+flute``,
    ``dream-layer-layer10_pointwise-c5``; ``-waveform-<rule>[-flip]`` in the waveform domain."""
    report = result_or_report.report if isinstance(result_or_report, DreamResult) \
        else result_or_report
    if report["layer"] is not None:
        name = f"layer-{slug(report['layer'].replace('/', '_'))}"
        if report["channel"] is not None:
            name += f"-c{report['channel']}"
    elif query:
        name = "+".join(slug(q) for q, _ in parse_target_spec(query))
    else:
        name = "+".join(slug(t["name"]) for t in report["targets"])
    if report["domain"] == "waveform":
        name += f"-waveform-{report['rule']}" + ("-flip" if report["flip"] else "")
    return f"dream-{name}"


def output_stem(input_label: str, name: str, out: str | Path | None, *, several: bool) -> Path:
    """Where a dream's files go: a path *without* extension (``.wav``/``.json``/... are added).

    ``out`` None: beside the input (``loop.dream-violin``); a generated start goes to the current
    folder (``noise-3s.dream-violin``). ``out`` an existing folder or ending in ``/``: that
    folder. Otherwise ``out`` is the stem itself (a ``.wav``-like suffix is dropped), allowed
    for one output only.
    """
    if parse_start(input_label) is not None and not Path(input_label).exists():
        base_dir = Path(".")
        stem = re.sub(r"[^a-z0-9]+", "-", input_label.lower()).strip("-")
    else:
        source = Path(input_label)
        base_dir, stem = source.parent, source.stem
    if out is None:
        return base_dir / f"{stem}.{name}"
    target = Path(out).expanduser()
    if target.is_dir() or str(out).endswith(("/", "\\")):
        return target / f"{stem}.{name}"
    if several:
        raise OutputError(f"--out {out}: with several inputs or targets, --out must be a folder "
                          "(end it with /)")
    return target.with_suffix("") if target.suffix.lower() in _AUDIO_SUFFIXES else target


def save_dream(result: DreamResult, stem: str | Path, *, plot: bool = False,
               gradient: bool = True, inputs: Sequence[str | Path] = (),
               model: AudioClassifier | None = None, subtype: str = "PCM_16") -> dict[str, Any]:
    """Write a dream's files atomically and complete its report.

    Writes ``<stem>.wav`` (the dream), ``<stem>.gradient.wav`` (the sonified gradient),
    ``<stem>.stepNNNN.wav`` per snapshot, ``<stem>.png`` with ``plot``, and ``<stem>.json`` (the
    report, last, with ``outputs`` filled in). When ``model`` is given, the written audio is
    re-loaded and re-analysed, and ``confidence_rendered`` (and ``top_rendered``,
    ``success_rendered``, ``rmse_db_rendered``, ``mse_db2_rendered``) then describe the file
    (``rendered_from = "file"``). Never writes over an input (``result.input_path`` and
    ``inputs``).

    Returns
    -------
    dict
        ``result.report["outputs"]``: paths as strings.
    """
    from dreamsound.audio import load_audio, save_audio
    from dreamsound.io_utils import atomic_write

    stem = Path(stem)
    protected = [p for p in (result.input_path, *inputs) if p is not None]
    outputs: dict[str, Any] = {}
    audio_path = save_audio(stem.with_name(stem.name + ".wav"), result.audio, result.sample_rate,
                            inputs=protected, subtype=subtype)
    outputs["audio"] = str(audio_path)
    if model is not None:
        reloaded = load_audio(audio_path, sample_rate=model.sample_rate, allow_silence=True,
                              max_seconds=None)
        targets = [TargetTerm(t["index"], t["name"], t["weight"], t["name"])
                   for t in result.report["targets"]]
        layer = result.report["layer"]
        objective = Objective(model, targets=targets) if layer is None else \
            Objective(model, layer=layer, channel=result.report["channel"])
        n_frames = result.spectrograms["original"].shape[-2]
        analysis, log_mel = analyse_waveform(model, reloaded, objective, n_frames=n_frames)
        original = torch.from_numpy(result.spectrograms["original"])
        lo = model.front_end.config.log_offset
        report = result.report
        report["confidence_rendered"] = analysis["confidence"]
        report["top_rendered"] = analysis["top"]
        report["success_rendered"] = analysis["success"]
        for i, entry in enumerate(report["targets"]):
            entry["confidence_rendered"] = analysis["confidences"][i]
        report["rmse_db_rendered"] = metrics.rmse_db(original, log_mel.cpu(), log_offset=lo)
        report["mse_db2_rendered"] = metrics.mse_db2(original, log_mel.cpu(), log_offset=lo)
        report["rendered_from"] = "file"
        result.spectrograms["rendered"] = log_mel.cpu().numpy()
    if gradient:
        outputs["gradient"] = str(save_audio(stem.with_name(stem.name + ".gradient.wav"),
                                             result.gradient_audio, result.sample_rate,
                                             inputs=protected, subtype=subtype))
    if result.snapshots:
        outputs["snapshots"] = [
            str(save_audio(stem.with_name(f"{stem.name}.step{step:04d}.wav"), audio,
                           result.sample_rate, inputs=protected, subtype=subtype))
            for step, audio in result.snapshots]
    if plot:
        from dreamsound.plot import plot_dream

        outputs["plot"] = str(plot_dream(result, stem.with_name(stem.name + ".png"),
                                         inputs=protected))
    report_path = stem.with_name(stem.name + ".json")
    outputs["report"] = str(report_path)
    result.report["outputs"] = outputs
    import json

    with atomic_write(report_path, inputs=protected) as temp:
        temp.write_text(json.dumps(result.report, indent=2) + "\n", encoding="utf-8")
    return outputs

