"""The single-layer network of ``irmas-pons`` (:class:`PonsNetwork`) and its classifier.

Six parallel convolution branches (5- and 80-row kernels, 1/3/5 columns), batch norm (folded
into the convolutions), ELU, max-pool over the whole frequency axis and 32 frames, a 1,792-d
embedding and a dense layer to 11 logits; :class:`PonsClassifier` scores patches by softmax.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dreamsound.data.irmas import IRMAS_CODES, IRMAS_NAMES
from dreamsound.models.base import AudioClassifier, PatchNetwork
from dreamsound.models.pons.frontend import PonsFrontEnd, pons_features

#: Output order of the network: the authors' ``classes.pkl`` (IRMAS codes).
CLASS_CODES = ("cel", "pia", "vio", "cla", "org", "gac", "tru", "flu", "sax", "gel", "voi")

#: Batch-norm epsilon of every branch (the Keras config).
BN_EPSILON = 1e-3
N_CLASSES = 11


@dataclass(frozen=True)
class BranchSpec:
    """One of the six parallel branches: conv (rows x cols, "same") → BN → ELU → max-pool.

    Attributes
    ----------
    name : str
        Stable public name (``branch_80x3``), rows (frequency) x columns (time).
    keras : str
        Keras layer prefix, columns first (``3_80`` → ``3_80_conv``, ``3_80_bn``).
    rows, cols, filters : int
    """

    name: str
    keras: str
    rows: int
    cols: int
    filters: int

    @property
    def padding(self) -> tuple[int, int, int, int]:
        """``(left, right, top, bottom)`` of "same" padding: ``k // 2`` before, the rest after
        (40 / 39 rows for the 80-row kernels, which matches Theano with flipped kernels)."""
        return (self.cols // 2, self.cols - 1 - self.cols // 2,
                self.rows // 2, self.rows - 1 - self.rows // 2)


#: The branches in concatenation order (the Keras ``merge_1`` inputs).
BRANCHES: tuple[BranchSpec, ...] = (
    BranchSpec("branch_5x1", "1_5", 5, 1, 128),
    BranchSpec("branch_5x3", "3_5", 5, 3, 64),
    BranchSpec("branch_5x5", "5_5", 5, 5, 32),
    BranchSpec("branch_80x1", "1_80", 80, 1, 128),
    BranchSpec("branch_80x3", "3_80", 80, 3, 64),
    BranchSpec("branch_80x5", "5_80", 80, 5, 32),
)
#: Max-pool window and stride (frequency rows, time columns): 96 x 128 → 1 x 4.
POOL = (96, 32)
PATCH_SHAPE = (96, 128)
EMBEDDING_SIZE = sum(b.filters for b in BRANCHES) * (PATCH_SHAPE[1] // POOL[1])  # 1,792


class PonsBranch(nn.Module):
    """``elu(conv(pad(x)))``, batch norm folded into the convolution; output ``[P, filters, 96,
    128]`` (the activation a ``--layer branch_...`` objective sees, before pooling)."""

    def __init__(self, spec: BranchSpec):
        super().__init__()
        self.spec = spec
        self.conv = nn.Conv2d(1, spec.filters, (spec.rows, spec.cols), bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.elu(self.conv(F.pad(x, self.spec.padding)))


class PonsNetwork(PatchNetwork):
    """The single-layer network: patches → ``(logits [P, 11], embeddings [P, 1792])``.

    :meth:`forward` takes dreamsound patches ``[P, 1, 128 frames, 96 bands]`` of
    :class:`PonsFrontEnd`'s log-mel (nepers), turns them into the authors' input layout
    ``[P, 1, 96, 128]`` in dB (:func:`pons_features`) and subtracts the training mean;
    :meth:`from_input` runs the network on such an input directly.

    Named layers: ``branch_5x1``, ``branch_5x3``, ``branch_5x5``, ``branch_80x1``,
    ``branch_80x3``, ``branch_80x5`` (post-ELU maps ``[P, filters, 96, 128]``) and ``logits``.
    Dropout (0.5) is an inference no-op and is left out.
    """

    def __init__(self, n_classes: int = N_CLASSES):
        super().__init__()
        self.branches = nn.ModuleDict({spec.name: PonsBranch(spec) for spec in BRANCHES})
        self.logits = nn.Linear(EMBEDDING_SIZE, n_classes)
        # The training-set mean patch in the authors' layout [96, 128], dB.
        self.register_buffer("mean", torch.zeros(PATCH_SHAPE))

    def forward(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and embeddings of dreamsound patches ``[P, 1, 128, 96]`` (nepers)."""
        return self.from_input(pons_features(patches) - self.mean)

    def from_input(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``[P, 11]`` and embeddings ``[P, 1792]`` of the authors' network input
        ``[P, 1, 96, 128]`` (dB features minus the training mean)."""
        pooled = [F.max_pool2d(branch(x), POOL, POOL).flatten(1)  # channel-major flatten
                  for branch in self.branches.values()]
        embeddings = torch.cat(pooled, dim=1)
        return self.logits(embeddings), embeddings

    def named_layers(self) -> dict[str, nn.Module]:
        layers: dict[str, nn.Module] = dict(self.branches.items())
        layers["logits"] = self.logits
        return layers


class PonsClassifier(AudioClassifier):
    """:class:`AudioClassifier` whose scores are the softmax per patch (single-label training);
    the clip score is the mean of the patch softmaxes, as in the authors' evaluation.

    The network sees a log-mel only after the front-end's top-dB clamp is applied again
    (``max(log_mel, max(log_mel) - ln 100)``, :meth:`PonsFrontEnd.relative_floor`). A log-mel
    from :meth:`log_mel` is unchanged by it (bit for bit), but one edited in the spectrogram
    domain is not: when a dream raises the clip's loudest band, every band at the floor rises
    with it as soon as the dream is rendered and heard again. Measured on ``examples/loop.wav``
    dreamed toward violin without this: the dreamed log-mel scored 0.95, the same log-mel
    clamped again 0.73 and its rendering 0.71 (the loudest band rose 2.9 dB, and with it the
    52 % of the log-mel at the floor). With it the objective, its gradient (which now reaches
    the loudest band through the floor) and ``--until`` see what the rendering will give.
    """

    def scores_from_logits(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=-1)

    def log_scores_from_logits(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(logits, dim=-1)

    def network_outputs(self, log_mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits [N, 11], embeddings [N, 1792])`` of a log-mel ``[T, 96]``, clamped to the
        clip's top-dB floor first (see the class docstring); differentiable."""
        front_end = self.front_end
        assert isinstance(front_end, PonsFrontEnd)
        clamped = torch.maximum(log_mel, front_end.relative_floor(log_mel))
        return super().network_outputs(clamped)


def class_names_and_codes() -> tuple[list[str], list[str]]:
    """Display names (``cello``, ...) and IRMAS codes in the network's output order."""
    names = dict(zip(IRMAS_CODES, IRMAS_NAMES, strict=True))
    return [names[code] for code in CLASS_CODES], list(CLASS_CODES)
