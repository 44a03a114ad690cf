"""YAMNet in PyTorch against TensorFlow's own outputs (``../shared/golden``, read its README).

Bounds (issue 2): log-mel <= 2e-3 with the same frames and patches; network alone (fed
TensorFlow's log-mel) logits <= 1e-4; end to end scores <= 1e-3 and embeddings <= 1e-3; input
gradient cosine >= 0.999. One clip, ``sine440``, is ill-conditioned in float32 and gets two looser,
explained bounds (end-to-end embeddings, input-gradient cosine); ``test_sine440_*`` show where its
difference arises and that it is not a porting error.
"""

from __future__ import annotations

import copy
import csv
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dreamsound.errors import WeightsError
from dreamsound.models.registry import get_spec, load_model
from dreamsound.models.weights import WeightsFile
from dreamsound.models.yamnet import (
    BN_EPSILON,
    FRONT_END,
    YAMNET_WEIGHTS,
    PointwiseReLU,
    SameConvReLU,
    class_map,
    conv_unit_specs,
    fused,
    load_h5,
    load_tflite,
    load_weights,
    tf_same_padding,
)

CLIPS = ["speech", "sine440", "noise", "violin", "piano", "duet5s", "speech_short"]
SHORT_CLIPS = ["speech", "sine440", "noise", "violin", "piano"]  # the ones with TFLite goldens
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model(yamnet_h5):
    return load_model("yamnet", weights=yamnet_h5, device="cpu")


@pytest.fixture(params=["fused", "eager"])
def network_path(request, monkeypatch):
    """Run a test through the native kernels' fused layers and through the eager units."""
    if request.param == "fused" and fused.kernels() is None:
        pytest.skip("no native kernels here (dreamsound.native)")
    if request.param == "eager":
        monkeypatch.setattr(fused, "usable", lambda units, patches: False)
    return request.param


@pytest.fixture(scope="module")
def tflite_model(shared):
    return load_model("yamnet", weights=shared / "yamnet" / "yamnet.tflite", device="cpu")


def _waveform(golden, clip: str) -> torch.Tensor:
    return torch.from_numpy(golden[f"{clip}__waveform"])


def _input_gradient(model, waveform: np.ndarray, class_index: int) -> np.ndarray:
    """d(sum over patches of scores[:, c]) / d waveform, as the goldens define it."""
    x = torch.from_numpy(waveform).to(next(model.network.parameters()).dtype)
    x.requires_grad_(True)
    model(x).scores[:, class_index].sum().backward()
    return x.grad.double().numpy()


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _max_abs(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


# -- class names -----------------------------------------------------------------------------------
def test_class_map_equals_tensorflow_models_csv(shared, golden):
    packaged = REPO / "dreamsound" / "models" / "yamnet_classes.csv"
    with packaged.open(newline="", encoding="utf-8") as ours, \
            (shared / "yamnet" / "yamnet_class_map.csv").open(newline="", encoding="utf-8") as ref:
        assert list(csv.reader(ours)) == list(csv.reader(ref))
    names, mids = class_map()
    assert list(names) == [str(n) for n in golden["class_names"]]
    assert len(set(mids)) == 521 and all(m.startswith(("/m/", "/t/", "/g/")) for m in mids)


def test_model_exposes_names_codes_and_targets(model):
    assert model.sample_rate == 16000
    assert model.class_names[0] == "Speech" and model.class_names[186] == "Violin, fiddle"
    assert model.class_codes[186] == "/m/07y_7"
    assert model.resolve_class("violin") == 186
    assert model.resolve_class("/m/07y_7") == 186
    assert model.resolve_class("Music") == 132


def test_spec_is_registered_with_official_weights():
    spec = get_spec("yamnet")
    assert spec.weights is YAMNET_WEIGHTS
    assert isinstance(spec.weights, WeightsFile)
    assert spec.weights.url == "https://storage.googleapis.com/audioset/yamnet.h5"
    assert spec.weights.filename == "yamnet.h5"
    assert spec.weights.env_var == "DREAMSOUND_YAMNET_WEIGHTS"


# -- architecture ----------------------------------------------------------------------------------
def test_layer_table_matches_design():
    specs = conv_unit_specs()
    assert len(specs) == 27
    assert (specs[0].kind, specs[0].stride, specs[0].out_channels) == ("conv", 2, 32)
    pointwise = [s for s in specs if s.kind == "pointwise"]
    assert [s.out_channels for s in pointwise] == [64, 128, 128, 256, 256, 512, 512, 512, 512,
                                                   512, 512, 1024, 1024]
    strided = sorted({s.layer for s in specs if s.stride == 2})
    assert strided == [1, 3, 5, 7, 13]
    assert all(s.kernel == 1 and s.stride == 1 for s in pointwise)


@pytest.mark.parametrize(("size", "kernel", "stride", "expected"), [
    (96, 3, 2, (0, 1)),   # even size, stride 2: the extra pixel goes after
    (6, 3, 2, (0, 1)),
    (95, 3, 2, (1, 1)),
    (3, 3, 1, (1, 1)),
    (8, 1, 1, (0, 0)),
    (1, 3, 2, (1, 1)),
])
def test_tf_same_padding(size, kernel, stride, expected):
    assert tf_same_padding(size, kernel, stride) == expected


def test_strided_conv_aligns_like_tensorflow():
    """Stride 2, even input: TF windows start at pixel 0 (PyTorch ``padding=1`` starts at -1)."""
    spec = conv_unit_specs()[0]
    unit = SameConvReLU(spec)
    with torch.no_grad():
        unit.weight.copy_(torch.arange(1.0, 33.0).repeat_interleave(9).view(32, 1, 3, 3) *
                          torch.arange(1.0, 10.0).view(1, 1, 3, 3))
        unit.bias.zero_()
    x = torch.zeros(1, 1, 6, 4)
    x[0, 0, 2, 2] = 1.0
    out = unit(x)[0, 0]
    assert out.shape == (3, 2)
    # Window of output (0, 0) covers rows/cols 0..2, so the pixel hits kernel tap (2, 2) = 9;
    # window (1, 1) covers 2..4 and hits tap (0, 0) = 1. Nothing else sees the pixel.
    expected = torch.zeros(3, 2)
    expected[0, 0], expected[1, 1], expected[0, 1], expected[1, 0] = 9.0, 1.0, 7.0, 3.0
    assert torch.equal(out, expected)


@pytest.mark.parametrize("size", [(8, 6), (7, 5), (6, 1)])
@pytest.mark.parametrize("layer_index", [0, 1, 2, 3, 4])
def test_units_equal_their_definition(layer_index, size):
    """Each unit is ``relu(conv(tf_same_pad(x)) + bias)``: values, input and weight gradients.

    The units compute it in other ways (strided layers on even sizes as a kernel with leading
    zero taps under symmetric padding; pointwise layers as one matrix product over channels-last
    pixels; the first layer's input gradient as a phase-split convolution); in float64 they must
    agree with the plain definition to rounding, on even sizes, odd ones (the explicit-padding
    path) and a one-pixel width. Units 0-4: the first convolution, a stride-1 and a stride-2
    depthwise layer, and two pointwise layers.
    """
    specs = conv_unit_specs()
    spec = [specs[0], specs[1], specs[3], specs[2], specs[4]][layer_index]
    unit = PointwiseReLU(spec) if spec.kind == "pointwise" else SameConvReLU(spec)
    generator = torch.Generator().manual_seed(layer_index)
    with torch.no_grad():
        for parameter in unit.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    unit = unit.double()
    x = torch.randn(3, spec.in_channels, *size, generator=generator, dtype=torch.float64)
    ours_in, reference_in = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    top, bottom = tf_same_padding(size[0], spec.kernel, spec.stride)
    left, right = tf_same_padding(size[1], spec.kernel, spec.stride)
    reference = F.relu(F.conv2d(F.pad(reference_in, (left, right, top, bottom)), unit.weight,
                                unit.bias, stride=spec.stride, groups=spec.groups))
    ours = unit(ours_in)
    assert ours.shape == reference.shape
    torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-12)
    weights = torch.randn(reference.shape, generator=generator, dtype=torch.float64)
    wrt = (unit.weight, unit.bias)
    ours_grads = torch.autograd.grad((ours * weights).sum(), (ours_in, *wrt))
    reference_grads = torch.autograd.grad((reference * weights).sum(), (reference_in, *wrt))
    for got, expected in zip(ours_grads, reference_grads, strict=True):  # input, weight, bias
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    # The input gradient alone, as a dream asks for it (the weights' gradients not computed).
    (alone,) = torch.autograd.grad((unit(ours_in) * weights).sum(), ours_in)
    torch.testing.assert_close(alone, reference_grads[0], rtol=1e-12, atol=1e-12)


def test_named_layers_give_post_relu_activations(model, golden):
    names = list(model.named_layers())
    expected_names = ["layer1/conv"] + [f"layer{n}/{k}" for n in range(2, 15)
                                        for k in ("depthwise", "pointwise")] + ["logits"]
    assert names == expected_names
    captured: dict[str, torch.Tensor] = {}
    handles = [layer.register_forward_hook(
        lambda _m, _i, out, name=name: captured.__setitem__(name, out))
        for name, layer in model.named_layers().items()]
    try:
        with torch.no_grad():
            out = model(_waveform(golden, "speech"))
    finally:
        for handle in handles:
            handle.remove()
    height, width = 96, 64
    for spec in conv_unit_specs():
        height, width = math.ceil(height / spec.stride), math.ceil(width / spec.stride)
        activation = captured[spec.public_name]
        assert activation.shape == (1, spec.out_channels, height, width), spec.public_name
        assert activation.min() >= 0  # after the ReLU
    assert (height, width) == (3, 2)
    torch.testing.assert_close(captured["layer14/pointwise"].mean(dim=(-2, -1)), out.embeddings)
    torch.testing.assert_close(captured["logits"], out.logits)


# -- parity with TensorFlow ------------------------------------------------------------------------
@pytest.mark.parametrize("clip", CLIPS)
def test_front_end_matches_tensorflow(model, golden, clip):
    with torch.no_grad():
        log_mel = model.log_mel(_waveform(golden, clip))
    reference = golden[f"{clip}__log_mel"]
    assert log_mel.shape == reference.shape
    assert model.front_end.patches(log_mel).shape[0] == golden[f"{clip}__scores"].shape[0]
    # 2e-3 in log units, except in bands within ~3 dB of the log floor (mel < 0.001, next to
    # the 0.001 offset), where float32 rounding of the frame's loud bins (relative 6e-8 of a
    # peak ~60, i.e. ~4e-6 absolute) is magnified up to 1,000x by the log: there the mel
    # magnitude itself must agree to 1e-7 of its frame's peak (a few float32 ulps). The BLAS
    # kernel (AVX2 vs AVX-512) decides which of the two a quiet band needs.
    ours, ref = log_mel.double(), torch.from_numpy(reference).double()
    log_error = (ours - ref).abs()
    mel_error = (ours.exp() - ref.exp()).abs()
    frame_peak = ref.exp().amax(dim=-1, keepdim=True)
    assert bool(((log_error <= 2e-3) | (mel_error <= 1e-7 * frame_peak)).all())
    assert float(log_error.max()) <= 5e-3  # and nowhere far off even at the floor


@pytest.mark.parametrize("clip", CLIPS)
def test_network_alone_matches_tensorflow(model, golden, clip, network_path):
    """Fed TensorFlow's own log-mel, the network reproduces its logits and embeddings."""
    with torch.no_grad():
        logits, embeddings = model.network_outputs(torch.from_numpy(golden[f"{clip}__log_mel"]))
    assert _max_abs(logits, golden[f"{clip}__logits"]) <= 1e-4
    assert _max_abs(embeddings, golden[f"{clip}__embeddings"]) <= 1e-4


@pytest.mark.parametrize("clip", CLIPS)
def test_end_to_end_matches_tensorflow(model, golden, clip, network_path):
    with torch.no_grad():
        out = model(_waveform(golden, clip))
    assert out.scores.shape == golden[f"{clip}__scores"].shape
    assert _max_abs(out.scores, golden[f"{clip}__scores"]) <= 1e-3
    # sine440: its log-mel sits at the log floor in half of the cells, where float32 FFT rounding
    # differs between any two FFT implementations (torch here: 1.6e-3 from a float64 FFT;
    # TensorFlow: 1.4e-3). That alone moves the embedding by ~1e-3 (measured 1.1e-3), while
    # the network fed TensorFlow's log-mel agrees to 1e-5 (test_network_alone_matches_tensorflow)
    # and test_sine440_embedding_difference_comes_from_front_end_rounding shows it. 2e-3 is the
    # bound we can defend for this clip only.
    embedding_bound = 2e-3 if clip == "sine440" else 1e-3
    assert _max_abs(out.embeddings, golden[f"{clip}__embeddings"]) <= embedding_bound


@pytest.mark.parametrize("clip", CLIPS)
def test_input_gradient_matches_tensorflow(model, golden, clip, network_path):
    class_index = int(golden[f"{clip}__grad_class_index"])
    gradient = _input_gradient(model, golden[f"{clip}__waveform"], class_index)
    reference = golden[f"{clip}__grad"]
    assert gradient.shape == reference.shape  # through the padding, back to the unpadded length
    assert np.all(np.isfinite(gradient))
    # sine440: 99.8 % of the gradient's energy comes from mel bands at the log floor, where
    # d|X|/dX = X/|X| has the phase of float32 rounding noise and 1/(mel + 0.001) multiplies it
    # by ~1000. Neither TensorFlow's nor our gradient is accurate there: our own float32 and
    # float64 gradients agree only to cosine ~0.93. Where the sine has energy (200-700 Hz) the
    # two agree to >= 0.999 (test_sine440_gradient_difference_is_float32_noise). The golden
    # README measured 0.85 with an independent port; we measure 0.868; 0.8 is the defensible
    # bound for this clip only.
    bound = 0.8 if clip == "sine440" else 0.999
    assert _cosine(gradient, reference) >= bound


def _band(signal: np.ndarray, low_hz: float, high_hz: float, sample_rate: int = 16000):
    spectrum = np.fft.rfft(signal)
    freqs = np.fft.rfftfreq(len(signal), 1.0 / sample_rate)
    spectrum[(freqs < low_hz) | (freqs > high_hz)] = 0
    return np.fft.irfft(spectrum, len(signal))


def test_sine440_gradient_difference_is_float32_noise(model, golden):
    """Where the sine440 gradient difference arises, and why it is not a porting error."""
    waveform, reference = golden["sine440__waveform"], golden["sine440__grad"]
    class_index = int(golden["sine440__grad_class_index"])
    ours32 = _input_gradient(model, waveform, class_index)
    ours64 = _input_gradient(copy.deepcopy(model).double(), waveform, class_index)
    # 1. TensorFlow's own gradient lives almost entirely outside the band holding the sine.
    in_band = _band(reference, 200, 700)
    assert (in_band @ in_band) / (reference @ reference) < 0.01
    # 2. Within that band (the bins the sine actually occupies) we agree with TensorFlow ...
    assert _cosine(_band(ours32, 200, 700), in_band) >= 0.999
    assert _cosine(_band(ours64, 200, 700), in_band) >= 0.9999
    # 3. ... and outside it the gradient is float32 noise: the *same* port, run in float64,
    # differs from itself in float32 by more than the tight bound allows.
    assert _cosine(ours32, ours64) < 0.999
    # A well-conditioned clip, for contrast: precision does not matter there.
    violin = golden["violin__waveform"]
    violin_class = int(golden["violin__grad_class_index"])
    assert _cosine(_input_gradient(model, violin, violin_class),
                   _input_gradient(copy.deepcopy(model).double(), violin, violin_class)) > 0.99999


def test_sine440_embedding_difference_comes_from_front_end_rounding(model, golden):
    waveform = _waveform(golden, "sine440")
    reference = golden["sine440__embeddings"]
    with torch.no_grad():
        _, from_tf_log_mel = model.network_outputs(torch.from_numpy(golden["sine440__log_mel"]))
        ours32 = model(waveform)
        exact_log_mel = copy.deepcopy(model.front_end).double()(waveform.double()).float()
        _, from_exact_log_mel = model.network_outputs(exact_log_mel)
    # The network is exact (fed TensorFlow's log-mel) ...
    assert _max_abs(from_tf_log_mel, reference) <= 1e-4
    # ... while float32 FFT rounding alone (ours vs a float64 front-end) moves the log-mel by
    # ~1.6e-3 and the embedding by several 1e-4 on this clip.
    assert _max_abs(ours32.log_mel, exact_log_mel) > 5e-4
    assert _max_abs(ours32.embeddings, from_exact_log_mel) > 2e-4


# -- gradients for dreaming ------------------------------------------------------------------------
def test_gradient_ascent_step_raises_target_logit(model, golden):
    target = model.resolve_class("violin")
    waveform = _waveform(golden, "piano").clone().requires_grad_(True)
    objective = model(waveform).logits[:, target].mean()
    objective.backward()
    gradient = waveform.grad
    assert torch.isfinite(gradient).all()
    assert gradient.abs().max() > 0
    with torch.no_grad():
        stepped = waveform + 1e-3 * gradient / gradient.abs().max()
        after = model(stepped).logits[:, target].mean()
    assert after > objective.detach()


def test_log_mel_gradient_is_finite_and_nonzero(model, golden):
    log_mel = torch.from_numpy(golden["duet5s__log_mel"]).requires_grad_(True)
    model.logits_from_log_mel(log_mel)[:, 132].mean().backward()
    assert torch.isfinite(log_mel.grad).all() and log_mel.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in model.parameters())


# -- TFLite ----------------------------------------------------------------------------------------
def test_tflite_weights_equal_h5_weights(shared, yamnet_h5):
    """The shared yamnet.h5 was made from this .tflite (see shared/yamnet/README.md)."""
    from_tflite = load_tflite(shared / "yamnet" / "yamnet.tflite")
    from_h5 = load_h5(yamnet_h5)
    assert from_tflite.keys() == from_h5.keys()
    for key in from_h5:
        assert from_tflite[key].shape == from_h5[key].shape, key
        torch.testing.assert_close(from_tflite[key], from_h5[key], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("clip", CLIPS)
def test_tflite_model_gives_same_top5(model, tflite_model, golden, clip):
    with torch.no_grad():
        h5_scores = model(_waveform(golden, clip)).clip_scores.numpy()
        tflite_scores = tflite_model(_waveform(golden, clip)).clip_scores.numpy()
    # Both files hold the same (dequantized) weights, so even the order agrees: the closest
    # neighbours in any top-5 here are 3e-4 apart while the two models agree to 1e-6.
    assert list(np.argsort(-h5_scores)[:5]) == list(np.argsort(-tflite_scores)[:5])
    assert _max_abs(h5_scores, tflite_scores) <= 1e-4


@pytest.mark.parametrize("clip", SHORT_CLIPS)
def test_tflite_interpreter_agrees_loosely(tflite_model, golden, clip):
    """Loose sanity check against the TFLite interpreter itself (int8 activations on the fly).

    Its scores differ from float ones by up to ~0.2, so only the top-1 is compared: ours must be
    in the interpreter's top-2 (``noise`` has a near-tie: Static 0.453 vs White noise 0.450).
    """
    with torch.no_grad():
        ours = tflite_model(_waveform(golden, clip)).clip_scores.numpy()
    interpreter = golden[f"{clip}__tflite_scores"][0]
    assert int(np.argmax(ours)) in list(np.argsort(-interpreter)[:2])


# -- loaders and bad weights -----------------------------------------------------------------------
def _rewrite_h5(source: Path, target: Path, transform) -> None:
    """Copy every dataset of ``source`` to ``target`` through ``transform(name, array)``, which
    returns a list of ``(name, array)`` to write."""
    with h5py.File(source, "r") as src, h5py.File(target, "w") as dst:
        names: list[str] = []
        src.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        for name in names:
            for new_name, array in transform(name, src[name][()]):
                dst.create_dataset(new_name, data=array)


def _reference_forward(h5_path: Path, patches: torch.Tensor) -> torch.Tensor:
    """Keras semantics without folding, in float64: conv -> BatchNorm(eval) -> ReLU."""
    with h5py.File(h5_path, "r") as h5:
        names: list[str] = []
        h5.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        weights = {n: torch.from_numpy(h5[n][()]).double() for n in names}

    def get(suffix: str) -> torch.Tensor:
        (hit,) = [v for n, v in weights.items() if n.endswith("/" + suffix)]
        return hit

    x = patches.double()
    for spec in conv_unit_specs():
        layer = "layer1/conv" if spec.kind == "conv" else f"layer{spec.layer}/{spec.kind}_conv"
        if spec.kind == "depthwise":
            kernel = get(f"{layer}/depthwise_kernel:0").permute(2, 3, 0, 1)
        else:
            kernel = get(f"{layer}/kernel:0").permute(3, 2, 0, 1)
        pads = []
        for size in (x.shape[-1], x.shape[-2]):  # TensorFlow SAME: extra pixel after
            total = max((-(-size // spec.stride) - 1) * spec.stride + spec.kernel - size, 0)
            pads += [total // 2, total - total // 2]
        x = F.conv2d(F.pad(x, pads), kernel, stride=spec.stride, groups=spec.groups)
        x = F.batch_norm(x, get(f"{layer}/bn/moving_mean:0"), get(f"{layer}/bn/moving_variance:0"),
                         weight=get(f"{layer}/bn/gamma:0"), bias=get(f"{layer}/bn/beta:0"),
                         training=False, eps=BN_EPSILON)
        x = F.relu(x)
    return x.mean(dim=(-2, -1)) @ get("logits/kernel:0") + get("logits/bias:0")


def test_h5_loader_folds_general_batch_norm(yamnet_h5, tmp_path):
    """Official-style file: dense layer named ``logits``, real BN statistics (and a gamma)."""
    rng = np.random.default_rng(0)

    def transform(name: str, array: np.ndarray):
        name = name.replace("dense/dense/", "logits/logits/")
        if name.endswith("moving_mean:0"):
            return [(name, rng.normal(0.0, 0.2, array.shape).astype(np.float32))]
        if name.endswith("moving_variance:0"):
            gamma = name.replace("moving_variance:0", "gamma:0")
            return [(name, rng.uniform(0.5, 2.0, array.shape).astype(np.float32)),
                    (gamma, rng.uniform(0.7, 1.3, array.shape).astype(np.float32))]
        return [(name, array)]

    path = tmp_path / "official_style.h5"
    _rewrite_h5(yamnet_h5, path, transform)
    network = load_model("yamnet", weights=path, device="cpu").network
    patches = torch.from_numpy(rng.normal(-3.0, 1.5, (2, 1, 96, 64)).astype(np.float32))
    with torch.no_grad():
        logits, _ = network(patches)
    reference = _reference_forward(path, patches)
    scale = float(reference.abs().max())
    assert _max_abs(logits, reference) <= 1e-4 * max(scale, 1.0)


def _one_line_error_naming(path: Path, exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    assert path.name in message
    return message


@pytest.mark.parametrize("suffix", [".h5", ".tflite"])
def test_truncated_weights_are_a_clear_error(shared, tmp_path, suffix):
    source = shared / "yamnet" / ("yamnet.h5" if suffix == ".h5" else "yamnet.tflite")
    path = tmp_path / f"truncated{suffix}"
    data = source.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError) as exc:
        load_model("yamnet", weights=path, device="cpu")
    assert "damaged" in _one_line_error_naming(path, exc)


@pytest.mark.parametrize("name", ["notes.h5", "notes.tflite", "notes.bin", "empty.h5"])
def test_non_weights_file_is_a_clear_error(tmp_path, name):
    path = tmp_path / name
    path.write_text("" if name.startswith("empty") else "these are not weights\n")
    with pytest.raises(WeightsError) as exc:
        load_weights(path)
    _one_line_error_naming(path, exc)


def test_wrong_shape_kernel_is_a_clear_error(yamnet_h5, tmp_path):
    target = "layer5/pointwise_conv/layer5/pointwise_conv/kernel:0"

    def transform(name: str, array: np.ndarray):
        return [(name, np.zeros((1, 1, 128, 255), np.float32) if name == target else array)]

    path = tmp_path / "wrong_shape.h5"
    _rewrite_h5(yamnet_h5, path, transform)
    with pytest.raises(WeightsError) as exc:
        load_model("yamnet", weights=path, device="cpu")
    message = _one_line_error_naming(path, exc)
    assert "layer5/pointwise_conv" in message and "(1, 1, 128, 255)" in message


def test_missing_layer_and_nan_weights_are_clear_errors(yamnet_h5, tmp_path):
    missing = tmp_path / "missing.h5"
    _rewrite_h5(yamnet_h5, missing,
                lambda n, a: [] if n.startswith("dense/") else [(n, a)])
    with pytest.raises(WeightsError, match="classifier"):
        load_h5(missing)
    poisoned = tmp_path / "nan.h5"
    _rewrite_h5(yamnet_h5, poisoned, lambda n, a: [
        (n, np.full_like(a, np.nan) if n.endswith("layer9/depthwise_conv/bn/beta:0") else a)])
    with pytest.raises(WeightsError, match="NaN"):
        load_h5(poisoned)


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(WeightsError):
        load_model("yamnet", weights=tmp_path / "nowhere.h5", device="cpu")


def test_loader_recognises_files_without_their_usual_suffix(shared, tmp_path):
    h5_link, tflite_link = tmp_path / "weights.bin", tmp_path / "model.weights"
    h5_link.symlink_to(shared / "yamnet" / "yamnet.h5")
    tflite_link.symlink_to(shared / "yamnet" / "yamnet.tflite")
    assert load_weights(h5_link).keys() == load_weights(tflite_link).keys()


def test_front_end_config_is_yamnets():
    assert FRONT_END.min_samples == 15600
    assert FRONT_END.patch_hop_samples == 7680
    assert FRONT_END.padded_length(80000) == 84720


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_tensorflow(yamnet_h5, golden):
    cuda_model = load_model("yamnet", weights=yamnet_h5, device="cuda")
    # cuDNN convolutions default to TF32 on Ampere and later (10-bit mantissa): fine for
    # dreaming, too coarse for a float32 parity check.
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        _check_cuda_clips(cuda_model, golden)


def _check_cuda_clips(cuda_model, golden) -> None:
    for clip in CLIPS:
        waveform = _waveform(golden, clip).cuda().requires_grad_(True)
        out = cuda_model(waveform)
        class_index = int(golden[f"{clip}__grad_class_index"])
        out.scores[:, class_index].sum().backward()
        assert _max_abs(out.scores.detach().cpu(), golden[f"{clip}__scores"]) <= 1e-3
        if clip != "sine440":  # see test_input_gradient_matches_tensorflow
            assert _cosine(waveform.grad.cpu().numpy(), golden[f"{clip}__grad"]) >= 0.999

