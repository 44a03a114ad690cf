"""YAMNet's weights: the Keras ``yamnet.h5`` and ``.tflite`` exports, read into a state dict.

Both loaders return the state dict of :class:`~dreamsound.models.yamnet.network.YAMNetNetwork`
with batch norm folded into the convolutions (:func:`fold_batch_norm`); :data:`YAMNET_WEIGHTS`
says where the official file is downloaded from.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import torch

from dreamsound.errors import WeightsError
from dreamsound.models.weights import WeightsFile
from dreamsound.models.yamnet.network import (
    BN_EPSILON,
    EMBEDDING_SIZE,
    N_CLASSES,
    conv_unit_specs,
)

YAMNET_WEIGHTS = WeightsFile(
    model="yamnet",
    filename="yamnet.h5",
    url="https://storage.googleapis.com/audioset/yamnet.h5",
    # Digest of the official file as published in several independent public download scripts
    # (we cannot reach the URL from our build machines to re-check it); 15,296,092 bytes.
    sha256="13c3308955bbfaef262f175ac9c40e47b134573a93984f009220dd7cc12a1744",
    size=15296092,
    source="Google's official YAMNet Keras weights (tensorflow/models research/audioset/yamnet)",
    env_var="DREAMSOUND_YAMNET_WEIGHTS",
)


# -- weights: shared checks and folding ------------------------------------------------------------
def expected_state_shapes() -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for spec in conv_unit_specs():
        shapes[f"units.{spec.key}.weight"] = spec.torch_weight_shape
        shapes[f"units.{spec.key}.bias"] = (spec.out_channels,)
    shapes["logits.weight"] = (N_CLASSES, EMBEDDING_SIZE)
    shapes["logits.bias"] = (N_CLASSES,)
    return shapes


def _check_array(path: Path, what: str, array: np.ndarray, shape: tuple[int, ...]) -> None:
    if tuple(array.shape) != tuple(shape):
        raise WeightsError(f"{path}: {what} has shape {tuple(array.shape)}, expected "
                           f"{tuple(shape)}; this is not a YAMNet weights file")
    if not np.all(np.isfinite(array)):
        raise WeightsError(f"{path}: {what} holds NaN or Inf values; the file is corrupt")


def fold_batch_norm(kernel: np.ndarray, *, beta: np.ndarray | None, mean: np.ndarray,
                    variance: np.ndarray, gamma: np.ndarray | None = None,
                    epsilon: float = BN_EPSILON) -> tuple[np.ndarray, np.ndarray]:
    """Fold ``BN(conv(x))`` into one convolution with a bias.

    ``BN(y) = gamma * (y - mean) / sqrt(variance + epsilon) + beta``, so with
    ``scale = gamma / sqrt(variance + epsilon)`` the folded kernel is ``kernel * scale`` (per
    output channel) and the bias ``beta - mean * scale``. Computed in float64.

    Parameters
    ----------
    kernel : ndarray [out, ...]
        PyTorch-layout kernel, output channel first.
    beta, mean, variance, gamma : ndarray [out]
        Batch-norm parameters; ``gamma=None`` means no scale (YAMNet), ``beta=None`` no centre.

    Returns
    -------
    (kernel, bias) : float32 ndarrays ``[out, ...]`` and ``[out]``
    """
    variance = variance.astype(np.float64)
    scale = 1.0 / np.sqrt(variance + epsilon)
    if gamma is not None:
        scale = scale * gamma.astype(np.float64)
    folded = kernel.astype(np.float64) * scale.reshape((-1,) + (1,) * (kernel.ndim - 1))
    shift = np.zeros_like(scale) if beta is None else beta.astype(np.float64)
    bias = shift - mean.astype(np.float64) * scale
    return folded.astype(np.float32), bias.astype(np.float32)


def _to_state(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in
            arrays.items()}


# -- Keras .h5 -------------------------------------------------------------------------------------
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_DENSE_KERNEL = re.compile(r"(^|/)(logits|dense(_\d+)?)/kernel:0$")


def load_h5(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a Keras ``yamnet.h5`` into a :class:`YAMNetNetwork` state dict (batch norm folded).

    Datasets are found by their Keras weight names (``layer2/depthwise_conv/depthwise_kernel:0``,
    ``layer2/depthwise_conv/bn/moving_mean:0``, ...), whatever group prefix the file stores them
    under. The dense layer may be called ``logits`` or ``dense``. Batch norm is folded with the
    general formula (:func:`fold_batch_norm`), so both the official float file and files with
    pre-folded weights (mean 0, variance ``1 - eps``) load.

    Parameters
    ----------
    path : path
        The ``.h5`` file.

    Returns
    -------
    dict of str to Tensor
        Keys and shapes of ``YAMNetNetwork().state_dict()``.

    Raises
    ------
    WeightsError
        If the file cannot be read as HDF5, lacks a YAMNet weight, or has a wrong-shaped or
        non-finite one.
    """
    import h5py  # imported here: only needed when an .h5 file is actually loaded

    path = Path(path)
    try:
        with h5py.File(path, "r") as h5:
            names: list[str] = []
            h5.visititems(lambda name, obj: names.append(name)
                          if isinstance(obj, h5py.Dataset) else None)
            arrays = _read_keras_weights(path, h5, names)
    except WeightsError:
        raise
    except FileNotFoundError:
        raise WeightsError(f"weights file not found: {path}") from None
    except Exception as exc:  # h5py raises OSError/KeyError/ValueError on damaged files
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WeightsError(f"{path}: cannot read as a Keras HDF5 weights file; it is damaged, "
                           f"truncated or not HDF5 ({reason})") from None
    return _to_state(arrays)


def _read_keras_weights(path: Path, h5, names: list[str]) -> dict[str, np.ndarray]:
    def find(suffix: str, *, required: bool = True) -> np.ndarray | None:
        hits = [n for n in names if n == suffix or n.endswith("/" + suffix)]
        if not hits:
            if required:
                raise WeightsError(f"{path}: no weight {suffix!r}; this is not a YAMNet Keras "
                                   "weights file")
            return None
        values = [np.asarray(h5[n][()]) for n in hits]
        if any(v.shape != values[0].shape or not np.array_equal(v, values[0], equal_nan=True)
               for v in values[1:]):
            raise WeightsError(f"{path}: weight {suffix!r} appears {len(hits)} times with "
                               "different values")
        return values[0]

    arrays: dict[str, np.ndarray] = {}
    for spec in conv_unit_specs():
        layer = f"layer{spec.layer}/{spec.kind}" if spec.kind == "conv" else \
            f"layer{spec.layer}/{spec.kind}_conv"
        kernel_name = "depthwise_kernel:0" if spec.kind == "depthwise" else "kernel:0"
        kernel = find(f"{layer}/{kernel_name}")
        out, per_group, kh, kw = spec.torch_weight_shape
        if spec.kind == "depthwise":
            # Keras depthwise kernel [kh, kw, C, multiplier=1] -> torch [C, 1, kh, kw].
            _check_array(path, f"{layer} kernel", kernel, (kh, kw, out, 1))
            kernel = kernel.transpose(2, 3, 0, 1)
        else:
            # Keras conv kernel [kh, kw, in, out] -> torch [out, in, kh, kw].
            _check_array(path, f"{layer} kernel", kernel, (kh, kw, per_group, out))
            kernel = kernel.transpose(3, 2, 0, 1)
        bn: dict[str, np.ndarray | None] = {}
        for field_name in ("beta", "moving_mean", "moving_variance", "gamma"):
            value = find(f"{layer}/bn/{field_name}:0",
                         required=field_name in ("moving_mean", "moving_variance"))
            if value is not None:
                _check_array(path, f"{layer}/bn {field_name}", value, (out,))
            bn[field_name] = value
        if np.any(bn["moving_variance"] < 0):
            raise WeightsError(f"{path}: {layer}/bn has a negative moving variance; the file is "
                               "corrupt")
        weight, bias = fold_batch_norm(kernel, beta=bn["beta"], mean=bn["moving_mean"],
                                       variance=bn["moving_variance"], gamma=bn["gamma"])
        arrays[f"units.{spec.key}.weight"] = weight
        arrays[f"units.{spec.key}.bias"] = bias

    dense = sorted(n for n in names if _DENSE_KERNEL.search(n))
    if not dense:
        raise WeightsError(f"{path}: no classifier weights (a 'logits' or 'dense' layer); this is "
                           "not a YAMNet Keras weights file")
    if len(dense) > 1:
        raise WeightsError(f"{path}: several candidate classifier layers: {', '.join(dense)}")
    kernel = np.asarray(h5[dense[0]][()])
    bias_name = dense[0][: -len("kernel:0")] + "bias:0"
    if bias_name not in names:
        raise WeightsError(f"{path}: classifier {dense[0]!r} has no bias {bias_name!r}")
    bias = np.asarray(h5[bias_name][()])
    _check_array(path, "classifier kernel", kernel, (EMBEDDING_SIZE, N_CLASSES))
    _check_array(path, "classifier bias", bias, (N_CLASSES,))
    arrays["logits.weight"] = kernel.T  # Keras Dense kernel is [in, out]
    arrays["logits.bias"] = bias
    return arrays


# -- TFLite ----------------------------------------------------------------------------------------
def load_tflite(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a YAMNet ``.tflite`` export into a :class:`YAMNetNetwork` state dict.

    The flatbuffer is parsed with the ``tflite`` package. Its CONV_2D / DEPTHWISE_CONV_2D ops
    (27, in forward order) and the FULLY_CONNECTED op after them give the weights; a weight that
    is produced by a DEQUANTIZE op is followed back to its integer constant. Integer tensors are
    dequantized as ``(q - zero_point) * scale`` (per tensor, or per channel along the quantized
    dimension). Batch norm is already folded in such exports, so each op's bias input is the
    folded bias. Layouts are converted: conv ``[out, h, w, in]`` -> ``[out, in, h, w]``,
    depthwise ``[1, h, w, C]`` -> ``[C, 1, h, w]``; dense ``[out, in]`` is already PyTorch's.

    Raises
    ------
    WeightsError
        If the file is not a TFLite model, the ``tflite`` package is missing, or the graph does
        not have YAMNet's layers, strides and shapes.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise WeightsError(f"weights file not found: {path}") from None
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise WeightsError(f"{path}: not a TFLite model (no 'TFL3' flatbuffer identifier)")
    try:
        import tflite
    except ImportError:
        raise WeightsError(f"{path}: reading .tflite files needs the 'tflite' package: "
                           "pip install 'dreamsound-ml[tflite]'") from None
    try:
        arrays = _read_tflite_weights(path, data, tflite)
    except WeightsError:
        raise
    except Exception as exc:  # a damaged flatbuffer fails anywhere inside the parser
        raise WeightsError(f"{path}: cannot parse the TFLite model "
                           f"({type(exc).__name__}: {exc}); the file is damaged") from None
    return _to_state(arrays)


def _read_tflite_weights(path: Path, data: bytes, tflite) -> dict[str, np.ndarray]:
    model = tflite.Model.GetRootAs(data, 0)
    if model.SubgraphsLength() < 1:
        raise WeightsError(f"{path}: the TFLite model has no subgraph")
    graph = model.Subgraphs(0)
    ops = tflite.BuiltinOperator
    dtypes = {tflite.TensorType.FLOAT32: np.float32, tflite.TensorType.FLOAT16: np.float16,
              tflite.TensorType.INT8: np.int8, tflite.TensorType.UINT8: np.uint8,
              tflite.TensorType.INT16: np.int16, tflite.TensorType.INT32: np.int32}

    def opcode(op) -> int:
        code = model.OperatorCodes(op.OpcodeIndex())
        # Newer schemas moved codes >= 127 to BuiltinCode; small ones appear in both fields.
        return max(code.BuiltinCode(), code.DeprecatedBuiltinCode())

    operators = [graph.Operators(i) for i in range(graph.OperatorsLength())]
    producer = {int(t): op for op in operators for t in op.OutputsAsNumpy()}

    def constant(index: int, what: str) -> np.ndarray:
        """Float32 value of a constant tensor, following DEQUANTIZE ops back to the integers."""
        if index in producer:
            op = producer[index]
            if opcode(op) != ops.DEQUANTIZE:
                raise WeightsError(f"{path}: {what} is computed at run time, not stored")
            return constant(int(op.Inputs(0)), what)
        tensor = graph.Tensors(index)
        if tensor.Type() not in dtypes:
            raise WeightsError(f"{path}: {what} has unsupported tensor type {tensor.Type()}")
        buffer = model.Buffers(tensor.Buffer())
        if buffer.DataLength() > 0:
            raw = buffer.DataAsNumpy().tobytes()
        elif buffer.Offset() > 1:  # models over 2 GB keep buffers after the flatbuffer
            raw = data[buffer.Offset(): buffer.Offset() + buffer.Size()]
        else:
            raise WeightsError(f"{path}: {what} has no stored data")
        shape = tuple(int(d) for d in tensor.ShapeAsNumpy())
        values = np.frombuffer(raw, dtype=dtypes[tensor.Type()])
        if values.size != math.prod(shape):
            raise WeightsError(f"{path}: {what} holds {values.size} numbers for shape {shape}")
        values = values.reshape(shape)
        if np.issubdtype(values.dtype, np.integer):
            quant = tensor.Quantization()
            if quant is None or quant.ScaleLength() == 0:
                raise WeightsError(f"{path}: {what} is an integer tensor without a scale")
            scale = quant.ScaleAsNumpy().astype(np.float64)
            zero = (quant.ZeroPointAsNumpy().astype(np.float64) if quant.ZeroPointLength()
                    else np.zeros_like(scale))
            if scale.size > 1:  # per-channel: broadcast along the quantized dimension
                axis_shape = [1] * values.ndim
                axis_shape[quant.QuantizedDimension()] = -1
                scale, zero = scale.reshape(axis_shape), zero.reshape(axis_shape)
            return ((values.astype(np.float64) - zero) * scale).astype(np.float32)
        return values.astype(np.float32)

    convs = [(i, op) for i, op in enumerate(operators)
             if opcode(op) in (ops.CONV_2D, ops.DEPTHWISE_CONV_2D)]
    specs = conv_unit_specs()
    if len(convs) != len(specs):
        raise WeightsError(f"{path}: {len(convs)} convolutions, YAMNet has {len(specs)}; this is "
                           "not a YAMNet model")
    arrays: dict[str, np.ndarray] = {}
    for (_, op), spec in zip(convs, specs, strict=True):
        depthwise = opcode(op) == ops.DEPTHWISE_CONV_2D
        if depthwise != (spec.kind == "depthwise"):
            raise WeightsError(f"{path}: the op for {spec.public_name} is "
                               f"{'a depthwise' if depthwise else 'a full'} convolution")
        options = (tflite.DepthwiseConv2DOptions() if depthwise else tflite.Conv2DOptions())
        table = op.BuiltinOptions()
        if table is not None:
            options.Init(table.Bytes, table.Pos)
            if (options.StrideH(), options.StrideW()) != (spec.stride, spec.stride) or \
                    options.Padding() != tflite.Padding.SAME:
                raise WeightsError(f"{path}: {spec.public_name} has strides "
                                   f"{options.StrideH()}x{options.StrideW()} / padding "
                                   f"{options.Padding()}, expected {spec.stride} / SAME")
            if options.FusedActivationFunction() != tflite.ActivationFunctionType.RELU:
                raise WeightsError(f"{path}: {spec.public_name} is not followed by a ReLU")
        what = f"{spec.public_name} kernel"
        kernel = constant(int(op.Inputs(1)), what)
        out, per_group, kh, kw = spec.torch_weight_shape
        if depthwise:
            _check_array(path, what, kernel, (1, kh, kw, out))
            kernel = kernel.transpose(3, 0, 1, 2)
        else:
            _check_array(path, what, kernel, (out, kh, kw, per_group))
            kernel = kernel.transpose(0, 3, 1, 2)
        bias_index = int(op.Inputs(2)) if op.InputsLength() > 2 else -1
        bias = (constant(bias_index, f"{spec.public_name} bias") if bias_index >= 0
                else np.zeros(out, np.float32))
        _check_array(path, f"{spec.public_name} bias", bias, (out,))
        arrays[f"units.{spec.key}.weight"] = kernel
        arrays[f"units.{spec.key}.bias"] = bias

    last_conv = convs[-1][0]
    dense = [op for op in operators[last_conv + 1:] if opcode(op) == ops.FULLY_CONNECTED]
    if len(dense) != 1:
        raise WeightsError(f"{path}: expected one dense layer after the convolutions, found "
                           f"{len(dense)}")
    kernel = constant(int(dense[0].Inputs(1)), "classifier kernel")
    _check_array(path, "classifier kernel", kernel, (N_CLASSES, EMBEDDING_SIZE))
    bias_index = int(dense[0].Inputs(2)) if dense[0].InputsLength() > 2 else -1
    bias = (constant(bias_index, "classifier bias") if bias_index >= 0
            else np.zeros(N_CLASSES, np.float32))
    _check_array(path, "classifier bias", bias, (N_CLASSES,))
    arrays["logits.weight"] = kernel
    arrays["logits.bias"] = bias
    return arrays


# -- entry points ----------------------------------------------------------------------------------
def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """State dict from a ``.h5``/``.hdf5`` (Keras) or ``.tflite`` file.

    The loader is picked by suffix; a file with another suffix is recognised by its first bytes
    (HDF5 signature, TFLite ``TFL3`` identifier).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        return load_h5(path)
    if suffix == ".tflite":
        return load_tflite(path)
    try:
        with path.open("rb") as handle:
            head = handle.read(8)
    except FileNotFoundError:
        raise WeightsError(f"weights file not found: {path}") from None
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if head == _HDF5_MAGIC:
        return load_h5(path)
    if head[4:8] == b"TFL3":
        return load_tflite(path)
    raise WeightsError(f"{path}: not a YAMNet weights file (expected a Keras .h5 or a .tflite)")
