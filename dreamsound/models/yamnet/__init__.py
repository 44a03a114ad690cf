"""YAMNet in PyTorch, numerically equal to Google's TensorFlow model.

YAMNet (tensorflow/models ``research/audioset/yamnet``) is a MobileNetV1 trained on AudioSet. It
reads 0.96 s log-mel patches (96 frames x 64 bands, 16 kHz audio) and gives 521 independent class
logits per patch. This package only re-exports; imports point one way, ``spec -> weights ->
network``:

* :mod:`~dreamsound.models.yamnet.network`: the network (:class:`YAMNetNetwork`): conv 3x3
  stride 2 (32 filters) then 13 depthwise-separable layers, global average pooling to a 1024-d
  embedding and a dense layer to 521 logits. Batch norm is folded into the convolutions when
  weights are loaded, so every layer is ``relu(conv + bias)``;
* :mod:`~dreamsound.models.yamnet.weights`: the loaders, :func:`load_h5` for the Keras
  ``yamnet.h5`` and :func:`load_tflite` for a ``.tflite`` export (int8 weights dequantized);
  both return a state dict for :class:`YAMNetNetwork`;
* :mod:`~dreamsound.models.yamnet.spec`: the front end (:data:`FRONT_END`), the class map
  (:func:`class_map`) and :data:`SPEC`, the registry entry (``dreamsound.load_model("yamnet")``).

Facts honoured (see DESIGN.md section 3): TensorFlow "same" padding, whose single extra pixel on
stride-2 layers goes *after* (bottom/right), which ``padding=1`` in PyTorch would put before;
batch norm without scale, epsilon 1e-4; sigmoid (not softmax) scores.
"""

from dreamsound.models.yamnet.network import (
    BN_EPSILON,
    EMBEDDING_SIZE,
    N_CLASSES,
    ConvUnitSpec,
    PointwiseReLU,
    SameConvReLU,
    YAMNetNetwork,
    conv_unit_specs,
    tf_same_padding,
)
from dreamsound.models.yamnet.spec import FRONT_END, SPEC, build, build_from_state, class_map
from dreamsound.models.yamnet.weights import (
    YAMNET_WEIGHTS,
    fold_batch_norm,
    load_h5,
    load_tflite,
    load_weights,
)

__all__ = [
    "BN_EPSILON", "EMBEDDING_SIZE", "FRONT_END", "N_CLASSES", "SPEC", "YAMNET_WEIGHTS",
    "ConvUnitSpec", "PointwiseReLU", "SameConvReLU", "YAMNetNetwork", "build", "build_from_state",
    "class_map", "conv_unit_specs", "fold_batch_norm", "load_h5", "load_tflite", "load_weights",
    "tf_same_padding",
]
