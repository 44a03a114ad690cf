"""``musicnn`` and ``musicnn-msd``: Pons & Serra's pretrained music taggers, ported to PyTorch.

musicnn (J. Pons and X. Serra, "musicnn: pre-trained convolutional neural networks for music
audio tagging", ISMIR 2019 LBD, arXiv:1909.06654; ISC licence, PyPI ``musicnn-0.1.0``) tags 3 s
patches of music with 50 independent tags. Two of its pretrained models are here, with the same
code and different weights:

* ``musicnn``: ``MTT_musicnn``, trained on MagnaTagATune (tags such as violin, classical, techno);
* ``musicnn-msd``: ``MSD_musicnn``, trained on the Million Song Dataset (rock, jazz, House, ...).

The port is checked against TensorFlow's own outputs (``shared/musicnn``,
``tests/test_musicnn.py``): the front end, the network alone, its input gradient and the converted
weights.

Front end (:class:`MusicnnFrontEnd`): 16 kHz mono, STFT with a 512-sample periodic Hann window,
hop 256, **centred** (256 zeros on each side, librosa >= 0.10's ``pad_mode='constant'``), the
**power** spectrogram, librosa's Slaney mel matrix (96 bands, 0-8000 Hz, area-normalised), then
``log10(10000 * mel + 1)`` in float32. Patches are 187 frames (2.992 s), side by side (hop 187);
the frames after the last whole patch are not seen, as in the package.

Network (:class:`MusicnnNetwork`), per patch of 187 frames x 96 bands:

* input batch norm;
* "timbral" convolutions spanning 7 frames and 38 or 67 mel bands (204 filters each), max-pooled
  over frequency, and "temporal" convolutions spanning 128, 64 or 32 frames and one band
  (51 filters each), max-pooled over frequency: a 561-channel sequence of 187 frames;
* a mid-end of three 1-D convolutions over time (7 frames, 64 filters), the last two residual;
* the 753 channels (561 + 3 x 64) pooled over time by max and by mean, interleaved, then
  batch norm, dense 200 + ReLU + batch norm (the ``penultimate`` embedding) and dense 50 (logits).

Every convolution is conv -> ReLU -> batch norm (musicnn puts the norm after the activation);
batch norms use TensorFlow's epsilon 1e-3 and the stored moving statistics; the padding is
TensorFlow's (zeros, the extra row of an even "same" kernel *after*).

Weights are safetensors files holding the 64 TensorFlow variables verbatim (names such as
``conv2d/kernel``, TensorFlow layouts), written by ``scripts/data/convert_musicnn.py`` from the
wheel's checkpoints; they ship in ``models/musicnn/`` and ``models/musicnn_msd/`` with the ISC
notice and a model card. ``--weights`` also takes an ``.npz`` of the same variables.

This package only re-exports; imports point one way, ``spec -> weights -> network`` and
``spec -> frontend``:

* :mod:`dreamsound.models.musicnn.frontend`: :class:`MusicnnFrontEnd` and its config;
* :mod:`dreamsound.models.musicnn.network`: :class:`MusicnnNetwork` and the layout of the 64
  TensorFlow variables (:data:`VARIABLE_SHAPES`, :func:`check_variables`);
* :mod:`dreamsound.models.musicnn.weights`: the two models' tags and weights files
  (:data:`MTT`, :data:`MSD`) and :func:`load_variables`;
* :mod:`dreamsound.models.musicnn.spec`: :func:`build_model`, the registry entries :data:`SPEC`
  and :data:`MSD_SPEC`, and :func:`config_json`.
"""

from dreamsound.models.musicnn.frontend import (
    FRONT_END,
    LOG_SCALE,
    PATCH_FRAMES,
    MusicnnFrontEnd,
    MusicnnFrontEndConfig,
)
from dreamsound.models.musicnn.network import (
    BACKEND_UNITS,
    BN_EPSILON,
    FRONT_CHANNELS,
    MID_END,
    MID_FILTERS,
    MID_KERNEL,
    N_TAGS,
    POOLED_CHANNELS,
    TEMPORAL,
    TIMBRAL,
    VARIABLE_SHAPES,
    Backend,
    FrequencyPooledConv,
    MidEndLayer,
    MusicnnNetwork,
    TemporalBranches,
    TimbralBranches,
    check_variables,
)
from dreamsound.models.musicnn.spec import MSD_SPEC, SPEC, build_model, config_json
from dreamsound.models.musicnn.weights import (
    MSD,
    MSD_TAGS,
    MSD_WEIGHTS,
    MTT,
    MTT_TAGS,
    MTT_WEIGHTS,
    WEIGHTS_FORMAT,
    Variant,
    load_variables,
)

__all__ = ["BACKEND_UNITS", "BN_EPSILON", "FRONT_CHANNELS", "FRONT_END", "LOG_SCALE", "MID_END",
           "MID_FILTERS", "MID_KERNEL", "MSD", "MSD_SPEC", "MSD_TAGS", "MSD_WEIGHTS", "MTT",
           "MTT_TAGS", "MTT_WEIGHTS", "N_TAGS", "PATCH_FRAMES", "POOLED_CHANNELS", "SPEC",
           "TEMPORAL", "TIMBRAL", "VARIABLE_SHAPES", "WEIGHTS_FORMAT", "Backend",
           "FrequencyPooledConv", "MidEndLayer", "MusicnnFrontEnd", "MusicnnFrontEndConfig",
           "MusicnnNetwork", "TemporalBranches", "TimbralBranches", "Variant", "build_model",
           "check_variables", "config_json", "load_variables"]
