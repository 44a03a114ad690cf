"""The weights of ``irmas-pons``: the authors' Keras 1 ``.hdf5`` and the training-mean ``.npy``.

Both are downloaded by users (AGPL-3.0), never shipped (:data:`PONS_WEIGHTS`,
:data:`PONS_MEAN`); :func:`load_hdf5` flips the Theano kernels and folds batch norm into them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dreamsound.errors import WeightsError
from dreamsound.models.pons.network import (
    BN_EPSILON,
    BRANCHES,
    EMBEDDING_SIZE,
    N_CLASSES,
    PATCH_SHAPE,
)
from dreamsound.models.weights import WeightsFile
from dreamsound.models.yamnet.weights import fold_batch_norm

MODEL_NAME = "irmas-pons"

PONS_WEIGHTS = WeightsFile(
    model=MODEL_NAME,
    filename="singlelayer.hdf5",
    url="https://github.com/Veleslavia/EUSIPCO2017/raw/master/weights/singlelayer/"
        "epoch.115-val_loss.0.902-fbeta.0.673.hdf5",
    sha256="4ca446cb9b41c2838e669954f017d23bfd67717b86d9879bac78aeefdc2ae680",
    size=829992,
    source="the authors' Keras weights of Pons et al. 2017's single-layer model "
           "(github.com/Veleslavia/EUSIPCO2017, AGPL-3.0)",
    env_var="DREAMSOUND_IRMAS_PONS_WEIGHTS",
)
PONS_MEAN = WeightsFile(
    model=MODEL_NAME,
    filename="singlelayer_mean.npy",
    url="https://github.com/Veleslavia/EUSIPCO2017/raw/master/means/singlelayer_mean.npy",
    sha256="85c5b5e049fea7db0cd74bcfd66db1f0b99f442a58305c2bb0b882f572ac5150",
    size=98384,
    source="the training-set mean patch of the same model "
           "(github.com/Veleslavia/EUSIPCO2017, AGPL-3.0)",
    env_var="DREAMSOUND_IRMAS_PONS_MEAN",
)


_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def _check(path: Path, what: str, array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if tuple(array.shape) != tuple(shape):
        raise WeightsError(f"{path}: {what} has shape {tuple(array.shape)}, expected "
                           f"{tuple(shape)}; this is not the irmas-pons single-layer model")
    if not np.all(np.isfinite(array)):
        raise WeightsError(f"{path}: {what} holds NaN or Inf values; the file is corrupt")
    return array


def _read_hdf5(path: Path, h5) -> dict[str, np.ndarray]:
    # Keras 1 `model.save` keeps the weights under model_weights/; `save_weights` at the root.
    root = h5.get("model_weights", h5)

    def weight(layer: str, suffix: str, shape: tuple[int, ...]) -> np.ndarray:
        group = root.get(layer)
        name = f"{layer}_{suffix}"
        if group is None or (name not in group and f"{name}:0" not in group):
            raise WeightsError(f"{path}: no weight {layer}/{name}; this is not the irmas-pons "
                               "single-layer Keras model")
        data = group[name] if name in group else group[f"{name}:0"]
        return _check(path, f"{layer}/{name}", np.asarray(data[()], dtype=np.float64), shape)

    state: dict[str, np.ndarray] = {}
    for spec in BRANCHES:
        kernel = weight(f"{spec.keras}_conv", "W", (spec.filters, 1, spec.rows, spec.cols))
        bias = weight(f"{spec.keras}_conv", "b", (spec.filters,))
        bn = {field: weight(f"{spec.keras}_bn", field, (spec.filters,))
              for field in ("gamma", "beta", "running_mean", "running_std")}
        if np.any(bn["running_std"] < 0):
            raise WeightsError(f"{path}: {spec.keras}_bn has a negative running_std (a variance "
                               "in Keras 1); the file is corrupt")
        # Theano's conv2d is a true convolution: flip both kernel axes for torch's correlation.
        kernel = kernel[:, :, ::-1, ::-1]
        # BN(conv + b) = gamma (conv + b - mean) / sqrt(var + eps) + beta: fold with the conv
        # bias moved into the mean. Keras 1 names the variance "running_std".
        folded, folded_bias = fold_batch_norm(
            kernel, beta=bn["beta"], mean=bn["running_mean"] - bias,
            variance=bn["running_std"], gamma=bn["gamma"], epsilon=BN_EPSILON)
        state[f"branches.{spec.name}.conv.weight"] = folded
        state[f"branches.{spec.name}.conv.bias"] = folded_bias
    dense = weight("prediction", "W", (EMBEDDING_SIZE, N_CLASSES))
    state["logits.weight"] = dense.T  # Keras Dense kernel is [in, out]
    state["logits.bias"] = weight("prediction", "b", (N_CLASSES,))
    return state


def load_hdf5(path: str | Path) -> dict[str, torch.Tensor]:
    """Read the authors' Keras 1 ``.hdf5`` into a :class:`PonsNetwork` state dict (no mean).

    Datasets ``model_weights/<layer>/<layer>_W`` (``[out, in, rows, cols]``), ``_b``, and the
    batch-norm ``_gamma``, ``_beta``, ``_running_mean``, ``_running_std``; the dense layer
    ``prediction``. Kernels are flipped and batch norm folded (float64, then float32).

    Raises
    ------
    WeightsError
        If the file is missing, not HDF5, damaged or truncated, lacks a weight, or has a
        wrong-shaped or non-finite one.
    """
    import h5py  # only needed when the weights are actually loaded

    path = Path(path)
    try:
        with path.open("rb") as handle:
            head = handle.read(len(_HDF5_MAGIC))
    except FileNotFoundError:
        raise WeightsError(f"weights file not found: {path}") from None
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if head != _HDF5_MAGIC:
        raise WeightsError(f"{path}: not an HDF5 file (no HDF5 signature); irmas-pons needs the "
                           f"authors' Keras weights {PONS_WEIGHTS.filename}")
    try:
        with h5py.File(path, "r") as h5:
            arrays = _read_hdf5(path, h5)
    except WeightsError:
        raise
    except Exception as exc:  # h5py raises OSError/KeyError/ValueError on damaged files
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WeightsError(f"{path}: cannot read as a Keras HDF5 weights file; it is damaged or "
                           f"truncated ({reason})") from None
    return {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))
            for k, v in arrays.items()}


def load_mean(path: str | Path) -> torch.Tensor:
    """The training-set mean patch ``[96, 128]`` (dB, authors' layout) from its ``.npy``.

    Raises
    ------
    WeightsError
        If the file is missing, not a plain numeric ``.npy``, or not a finite 96 x 128 array.
    """
    path = Path(path)
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise WeightsError(f"mean file not found: {path}") from None
    except (OSError, ValueError, EOFError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WeightsError(f"{path}: cannot read as a NumPy .npy array; it is damaged or not "
                           f"{PONS_MEAN.filename} ({reason})") from None
    if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.number):
        raise WeightsError(f"{path}: not a numeric array; expected {PONS_MEAN.filename}")
    _check(path, "the mean patch", array, PATCH_SHAPE)
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
