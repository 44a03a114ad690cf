"""``irmas-pons``: the IRMAS-trained single-layer timbre CNN of Pons et al. (EUSIPCO 2017).

J. Pons, O. Slizovskaia, R. Gong, E. Gómez & X. Serra, *Timbre analysis of music audio signals
with convolutional neural networks*, EUSIPCO 2017. The authors' Keras 1.2 / Theano model
("single-layer", validation f-beta 0.673) was trained on the real IRMAS training recordings; its
weights (``github.com/Veleslavia/EUSIPCO2017``, AGPL-3.0) are downloaded by users, never shipped.

This package only re-exports; imports point one way, ``spec -> weights -> network -> frontend``:

* :mod:`~dreamsound.models.pons.frontend`: :class:`PonsFrontEnd`, the authors' librosa front-end,
  differentiable, on dreamsound's log-mel conventions (see "Log-mel scale" below);
* :mod:`~dreamsound.models.pons.network`: :class:`PonsNetwork`, six parallel convolution branches
  (5- and 80-row kernels, 1/3/5 columns), batch norm, ELU, max-pool over the whole frequency axis
  and 32 frames, a 1,792-d embedding and a dense layer to 11 logits; :class:`PonsClassifier`;
* :mod:`~dreamsound.models.pons.weights`: :func:`load_hdf5` / :func:`load_mean`, the Keras 1
  ``.hdf5`` and the training-mean ``.npy``;
* :mod:`~dreamsound.models.pons.spec`: :data:`SPEC`, the registry entry
  (``dreamsound.load_model("irmas-pons")``).

Conventions the weights file does not state, settled by measurement (``../shared/pons/README.md``):
Theano convolutions are true convolutions, so the kernels are **flipped** (rows and columns);
batch norm's ``running_std`` holds the **variance** (``x̂ = (x - mean) / sqrt(running_std + 1e-3)``);
the "same" padding of the even 80-row kernels is 40 rows before and 39 after; the pooled maps
are flattened **channel-major**. The clip score is the **mean of the patch softmaxes**.

Log-mel scale
-------------
The authors' features are ``F = power_to_db(P², ref=1, amin=1e-10, top_db=80)`` with ``P`` the
Slaney power mel (``|STFT|²`` through the area-normalised mel matrix): the power is squared once
more, so ``F = 20·log10 P`` and 1 dB of audio level moves ``F`` by 2 dB. dreamsound's engine and
metrics read a log-mel as *nepers of a mel magnitude* (``mel_db = log_mel · 20 / ln 10``, steps
and ``--max-rmse-db`` in those dB). So the log-mel this front-end returns is

    ``log_mel = ln(max(sqrt(P), 10^-2.5))``, floored at the clip's maximum minus ``ln 100``,

the natural log of the *root-power* mel magnitude ``sqrt(P)``, and the network computes
``F = log_mel · 40 / ln 10`` (:data:`FEATURE_DB_PER_NEPER`) exactly: ``amin=1e-10`` on ``P²`` is the
magnitude floor ``10^-2.5`` (``log_offset``, -50 dB) and ``top_db=80`` on ``F`` is 40 dB, i.e.
``ln 100`` nepers, of this magnitude. Then ``mel_db = 10·log10 P = F / 2``: dB of the band's
power, which moves 1 dB per dB of audio gain as on every other model, so ``rmse_db`` stays
comparable across models (reporting ``F`` itself would double every distance). The base class's
``floor``, ``mel_db`` and the engine's use of ``log_offset`` are therefore right as they stand.
"""

from dreamsound.models.pons.frontend import (
    AMIN,
    FEATURE_DB_PER_NEPER,
    FRONT_END,
    MIN_SAMPLES,
    TOP_DB,
    TOP_NEPERS,
    PonsFrontEnd,
    PonsFrontEndConfig,
    pons_features,
)
from dreamsound.models.pons.network import (
    BN_EPSILON,
    BRANCHES,
    CLASS_CODES,
    EMBEDDING_SIZE,
    N_CLASSES,
    PATCH_SHAPE,
    POOL,
    BranchSpec,
    PonsBranch,
    PonsClassifier,
    PonsNetwork,
    class_names_and_codes,
)
from dreamsound.models.pons.spec import SPEC, build, build_from_files
from dreamsound.models.pons.weights import (
    MODEL_NAME,
    PONS_MEAN,
    PONS_WEIGHTS,
    load_hdf5,
    load_mean,
)

__all__ = ["AMIN", "BN_EPSILON", "BRANCHES", "CLASS_CODES", "EMBEDDING_SIZE",
           "FEATURE_DB_PER_NEPER", "FRONT_END", "MIN_SAMPLES", "MODEL_NAME", "N_CLASSES",
           "PATCH_SHAPE", "PONS_MEAN", "PONS_WEIGHTS", "POOL", "SPEC", "TOP_DB", "TOP_NEPERS",
           "BranchSpec", "PonsBranch", "PonsClassifier", "PonsFrontEnd", "PonsFrontEndConfig",
           "PonsNetwork", "build", "build_from_files", "class_names_and_codes", "load_hdf5",
           "load_mean", "pons_features"]
