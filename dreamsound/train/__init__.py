"""Train the instrument CNN on an IRMAS-layout folder (``dreamsound train``).

The loop follows Han, Kim & Lee (2017) where it matters for IRMAS: 1 s log-mel windows cut at
random from each 3 s training excerpt, one sigmoid per class trained with binary cross-entropy on
the excerpt's (single, predominant) label, and a clip decision made by averaging the window scores
and thresholding at a θ chosen on validation data -- never on test data.

What it adds: a validation split stratified by class that keeps excerpts of one song together;
augmentation in the mel-magnitude domain (gain, random EQ with tilt and band-limiting, a small
frequency shift, a synthetic room, a quieter second excerpt mixed in, a noise floor, small
time/frequency masks), which is cheap because every file is decoded, resampled and turned into a
log-mel once, up front; early stopping on the validation loss; and a
checkpoint written atomically at every improvement, so an interrupted run leaves the last good
model intact and loadable.

Outputs in ``out_dir``: ``model.safetensors`` (weights + the whole configuration in its metadata),
``config.json`` (the same configuration, readable) and ``train_log.json`` (one record per epoch).

Layout (each module imports only those above it): ``progress`` (the :class:`TrainProgress`
event), ``data`` (decoding, the validation split, random windows), ``augmentation``
(:class:`Augmentation`, :func:`augment`, :func:`mixup`), ``metrics`` (clip scores, F1, θ) and
``loop`` (:func:`train`). This module only re-exports.
"""

from dreamsound.models.instrument import Architecture
from dreamsound.train.augmentation import FULL_SCALE_MEL, Augmentation, augment, mixup
from dreamsound.train.data import LoadedClip, load_clips, split_by_group
from dreamsound.train.loop import DEFAULT_EPOCHS, DEFAULT_PATIENCE, TrainResult, train
from dreamsound.train.metrics import choose_threshold, clip_scores, f1_scores
from dreamsound.train.progress import ProgressCallback, TrainProgress

__all__ = [
    "DEFAULT_EPOCHS",
    "DEFAULT_PATIENCE",
    "FULL_SCALE_MEL",
    "Architecture",
    "Augmentation",
    "LoadedClip",
    "ProgressCallback",
    "TrainProgress",
    "TrainResult",
    "augment",
    "choose_threshold",
    "clip_scores",
    "f1_scores",
    "load_clips",
    "mixup",
    "split_by_group",
    "train",
]
