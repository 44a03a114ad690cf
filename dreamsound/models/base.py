"""The classifier contract every dreamsound model honours.

A model is a :class:`AudioClassifier`: a differentiable :class:`~dreamsound.spectral.LogMelFrontEnd`
(waveform -> log-mel -> patches) followed by a patch network (patches -> logits and embeddings)
with *named layers*. The dream engine only ever talks to this interface, so any classifier that
fits it can be dreamed on, sonified and evaluated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from dreamsound.errors import TargetError, did_you_mean
from dreamsound.models.concepts import concept_indices, find_concepts
from dreamsound.spectral import FrontEndConfig, LogMelFrontEnd


class PatchNetwork(nn.Module):
    """The part of a model after the front-end.

    Subclasses implement :meth:`forward` on patches ``[P, 1, patch_frames, n_mels]`` returning
    ``(logits [P, C], embeddings [P, D])`` and :meth:`named_layers`.
    """

    def named_layers(self) -> dict[str, nn.Module]:
        """Layers a user may pick as an activation objective, by stable public name."""
        raise NotImplementedError


@dataclass
class ModelOutput:
    """What one forward pass of a clip gives (N patches, C classes, T frames, F mel bands).

    Attributes
    ----------
    logits : Tensor [N, C]
        Pre-activation outputs per patch.
    scores : Tensor [N, C]
        Probabilities per patch (independent sigmoids for multi-label models).
    embeddings : Tensor [N, D]
        The pooled feature vector per patch.
    log_mel : Tensor [T, F]
        The model's log-mel spectrogram of the (padded) clip.
    """

    logits: torch.Tensor
    scores: torch.Tensor
    embeddings: torch.Tensor
    log_mel: torch.Tensor

    @property
    def clip_scores(self) -> torch.Tensor:
        """Clip-level score per class ``[C]``: the mean over patches."""
        return self.scores.mean(dim=0)


class AudioClassifier(nn.Module):
    """A front-end plus a patch network, with class names.

    Parameters
    ----------
    name : str
        Registry name (``"yamnet"``, ``"instrument"``, ...).
    front_end : FrontEndConfig or LogMelFrontEnd
        How the waveform becomes log-mel patches (a config for the standard front-end, or a
        front-end object for models with their own conventions).
    network : PatchNetwork
        Patches -> logits, embeddings.
    class_names : sequence of str
        Display names in output index order.
    class_codes : sequence of str, optional
        Short aliases per class (IRMAS's ``vio``, AudioSet mids, ...) accepted as targets.
    """

    def __init__(self, name: str, front_end: FrontEndConfig | LogMelFrontEnd,
                 network: PatchNetwork, class_names: Sequence[str],
                 class_codes: Sequence[str] | None = None):
        super().__init__()
        self.name = name
        # A config builds the standard front-end; a model with another log or STFT convention
        # passes its own LogMelFrontEnd subclass.
        self.front_end = (front_end if isinstance(front_end, LogMelFrontEnd)
                          else LogMelFrontEnd(front_end))
        self.network = network
        self.class_names = list(class_names)
        self.class_codes = list(class_codes) if class_codes is not None else []

    # -- facts -------------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        """Input sample rate in Hz."""
        return self.front_end.config.sample_rate

    @property
    def device(self) -> torch.device:
        return self.front_end.mel_matrix.device

    def named_layers(self) -> dict[str, nn.Module]:
        """Layers available to activation objectives (``--layer NAME``)."""
        return self.network.named_layers()

    def resolve_class(self, name: str | int) -> int:
        """Index of the class a user means by ``name``.

        Tried in order, case-insensitively: an index, the exact display name, a class code
        (IRMAS ``vio``, AudioSet ``/m/07q...``), one comma-separated part of a name
        (``violin`` -> ``Violin, fiddle``), a name of the same sound in another model's
        vocabulary (:mod:`dreamsound.models.concepts`: ``gac`` -> ``Acoustic guitar``), then a
        whole word of a name if that is unambiguous.
        Raises :class:`TargetError` with the closest names otherwise.
        """
        return resolve_class_name(name, self.class_names, self.class_codes, model=self.name)

    # -- computation -------------------------------------------------------------------------
    def scores_from_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Probabilities from logits: independent sigmoids (every built-in is multi-label)."""
        return torch.sigmoid(logits)

    def log_scores_from_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """``log(scores_from_logits(logits))``, computed stably: its gradient stays non-zero
        once a score rounds to 1.0 in float32 (a sigmoid logit over ~17), where the log of
        the score would give exactly zero and a dream would stop ascending."""
        return F.logsigmoid(logits)

    def log_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """Log-mel ``[..., T, F]`` of a waveform ``[..., n]`` at :attr:`sample_rate` (padded)."""
        return self.front_end(waveform)

    def network_outputs(self, log_mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits [N, C], embeddings [N, D])`` of a log-mel ``[T, F]``, one row per patch."""
        patches = self.front_end.patches(log_mel)
        return self.network(patches.unsqueeze(-3))

    def logits_from_log_mel(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Per-patch logits ``[N, C]`` of a log-mel ``[T, F]``; differentiable."""
        return self.network_outputs(log_mel)[0]

    def forward(self, waveform: torch.Tensor) -> ModelOutput:
        """Run a mono clip ``[n]`` (float, at :attr:`sample_rate`) end to end."""
        if waveform.dim() != 1:
            raise ValueError(f"expected a mono waveform [n], got shape {tuple(waveform.shape)}")
        log_mel = self.log_mel(waveform)
        logits, embeddings = self.network_outputs(log_mel)
        return ModelOutput(logits=logits, scores=self.scores_from_logits(logits),
                           embeddings=embeddings, log_mel=log_mel)


def resolve_class_name(name: str | int, class_names: Sequence[str], class_codes: Sequence[str] = (),
                       *, model: str = "model") -> int:
    """See :meth:`AudioClassifier.resolve_class`; usable without building a model."""
    query = str(name).strip()
    if query.isdigit() and int(query) < len(class_names):
        return int(query)
    lowered = query.lower()
    for table in (class_names, class_codes):
        for index, candidate in enumerate(table):
            if candidate.lower() == lowered:
                return index
    parts = [i for i, c in enumerate(class_names)
             if lowered in (p.strip().lower() for p in c.split(","))]
    if parts:
        return parts[0]
    # A name from another model's vocabulary ("gac", "violin", "Singing") through the concept map;
    # a name two concepts share ("guitar") is left to the ambiguity check below.
    concepts = find_concepts(query)
    if len(concepts) == 1:
        mapped = concept_indices(concepts[0], class_names, class_codes)
        if mapped:
            return mapped[0]
    words = [i for i, c in enumerate(class_names)
             if lowered in c.lower().replace(",", " ").replace("(", " ").replace(")", " ").split()]
    if len(words) == 1:
        return words[0]
    if len(words) > 1:
        options = ", ".join(repr(class_names[i]) for i in words[:8])
        raise TargetError(f"{query!r} matches several {model} classes: {options}; "
                          "give the full name")
    raise TargetError(f"{model} has no class {query!r}."
                      + (did_you_mean(query, class_names) or
                         f" See `dreamsound classes --model {model}`."))
