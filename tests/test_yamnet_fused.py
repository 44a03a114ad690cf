"""YAMNet through its native 3x3 kernels (``dreamsound/models/yamnet/fused.py``)
against the eager units, which ``tests/test_yamnet.py`` holds to TensorFlow's outputs.

The kernels change the order of the 3x3 layers' sums only: logits within 1e-4 (the TensorFlow
bound; 3.4e-5 measured on noise). The input gradient of a ReLU network depends on the input
only through which ReLUs are open, so it agrees to ~1e-8 -- unless a pre-activation lies within
rounding of zero and the two sums put it on different sides: one such ReLU (layer 8's depthwise
output in the (50, 30) case, where the eager value is 0.0) turns 896 of the 6,000 input
gradients, cosine 0.9999956. The bound is the cosine, 0.9999 (TensorFlow's is 0.999).
"""

from __future__ import annotations

import platform
import shutil
import sys

import pytest
import torch

from dreamsound import native
from dreamsound.models.registry import load_model
from dreamsound.models.yamnet import YAMNetNetwork, fused


def _cpu_has_avx512() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            return any(line.startswith("flags") and " avx512f" in line for line in info)
    except OSError:
        return False


CAN_BUILD = (sys.platform == "linux" and platform.machine() == "x86_64" and _cpu_has_avx512()
             and shutil.which("cc") is not None)
needs_kernels = pytest.mark.skipif(not CAN_BUILD, reason="the kernels need Linux x86-64 with "
                                   "AVX-512 and a C compiler")


@pytest.fixture(scope="module")
def model(yamnet_h5):
    return load_model("yamnet", weights=yamnet_h5, device="cpu")


@pytest.fixture
def fused_calls(monkeypatch):
    """How many times the fused layers ran (forward with and without a gradient)."""
    calls: list[bool] = []
    original = fused._forward

    def counting(x, stack, keep_masks):
        calls.append(keep_masks)
        return original(x, stack, keep_masks)

    monkeypatch.setattr(fused, "_forward", counting)
    return calls


def _eager(monkeypatch) -> None:
    monkeypatch.setattr(fused, "usable", lambda units, patches: False)


GRADIENT_COSINE = 0.9999


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().flatten(), b.double().flatten()
    return float(a @ b / (a.norm() * b.norm()))


def _logits_and_gradient(network, patches: torch.Tensor, target: int):
    x = patches.clone().requires_grad_(True)
    logits, embeddings = network(x)
    (gradient,) = torch.autograd.grad(logits[:, target].sum() + 0.1 * embeddings.sum(), x)
    return logits.detach(), gradient


@needs_kernels
def test_kernels_build_and_load_here():
    assert fused.kernels() is not None, native.why_not(fused.SOURCE)


@needs_kernels
@pytest.mark.parametrize("size", [(96, 64), (50, 30), (17, 9)])
def test_fused_layers_equal_the_eager_units(model, monkeypatch, fused_calls, size):
    """Random patches of YAMNet's size and odd sizes (TensorFlow's padding before the map on
    odd stride-2 inputs): logits and the input gradient of logits and embeddings."""
    generator = torch.Generator().manual_seed(size[0])
    patches = 2 * torch.randn(4, 1, *size, generator=generator) - 3  # log-mel-like values
    logits, gradient = _logits_and_gradient(model.network, patches, target=132)
    assert fused_calls == [True]
    _eager(monkeypatch)
    eager_logits, eager_gradient = _logits_and_gradient(model.network, patches, target=132)
    assert fused_calls == [True]
    assert float((logits - eager_logits).abs().max()) <= 1e-4
    assert float(gradient.abs().max()) > 0
    assert _cosine(gradient, eager_gradient) >= GRADIENT_COSINE


@needs_kernels
def test_fused_dream_gradient_on_real_audio_equals_eager(model, golden, monkeypatch, fused_calls):
    """End to end from the waveform (the front end, patches, network, scores), as a dream
    step asks: the same scores and waveform gradient as the eager units."""
    waveform = torch.from_numpy(golden["violin__waveform"])

    def scores_and_gradient():
        x = waveform.clone().requires_grad_(True)
        scores = model(x).scores
        (gradient,) = torch.autograd.grad(scores[:, 40:45].sum(), x)
        return scores.detach(), gradient

    scores, gradient = scores_and_gradient()
    assert fused_calls == [True]
    _eager(monkeypatch)
    eager_scores, eager_gradient = scores_and_gradient()
    assert float((scores - eager_scores).abs().max()) <= 1e-5
    assert _cosine(gradient, eager_gradient) >= GRADIENT_COSINE


@needs_kernels
def test_forward_without_gradient_keeps_no_masks(model, fused_calls):
    patches = torch.randn(3, 1, 96, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits, embeddings = model.network(patches)
    assert fused_calls == [False]
    with_graph, _ = model.network(patches.clone().requires_grad_(True))
    assert torch.equal(logits, with_graph.detach())
    assert embeddings.shape == (3, 1024)


@needs_kernels
def test_layer_hooks_trainable_weights_and_float64_run_the_eager_units(model, fused_calls):
    """What the fused layers cannot give (a layer's activation, weight gradients, float64)
    goes through the eager units, which give it."""
    patches = torch.randn(2, 1, 96, 64, generator=torch.Generator().manual_seed(2))
    captured = []
    unit = model.network.units["layer6_pointwise"]
    handle = unit.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        with torch.no_grad():
            model.network(patches)
    finally:
        handle.remove()
    assert fused_calls == [] and captured and captured[0].shape == (2, 256, 12, 8)

    network = YAMNetNetwork()
    network.load_state_dict(model.network.state_dict())  # weights that require gradients
    logits, _ = network(patches)
    logits.sum().backward()
    assert fused_calls == [] and network.units["layer3_depthwise"].weight.grad is not None

    with torch.no_grad():
        network.requires_grad_(False)
        double, _ = network.double()(patches.double())
    assert fused_calls == [] and double.dtype == torch.float64


def test_turned_off_by_environment(monkeypatch, tmp_path):
    source = tmp_path / "k.c"
    source.write_text("int answer(void) { return 42; }\n")
    monkeypatch.setenv("DREAMSOUND_KERNELS", "0")
    assert native.load_kernels(source) is None
    assert "DREAMSOUND_KERNELS" in native.why_not(source)


def test_missing_compiler_is_quiet(monkeypatch, tmp_path):
    if not native._process_uses_libgomp():
        pytest.skip("torch here does not use libgomp (the loader stops before the compiler)")
    source = tmp_path / "k.c"
    source.write_text("int answer(void) { return 42; }\n")
    monkeypatch.setenv("CC", "no-such-compiler-here")
    monkeypatch.setenv("DREAMSOUND_CACHE", str(tmp_path / "cache"))
    assert native.load_kernels(source) is None
    assert "no C compiler" in native.why_not(source)
    assert not (tmp_path / "cache").exists()


@pytest.mark.skipif(shutil.which("cc") is None or sys.platform != "linux",
                    reason="needs a C compiler on Linux")
def test_compile_error_leaves_nothing_and_a_good_source_is_cached(monkeypatch, tmp_path):
    if not native._process_uses_libgomp():
        pytest.skip("torch here does not use libgomp")
    cache = tmp_path / "cache"
    monkeypatch.setenv("DREAMSOUND_CACHE", str(cache))
    broken = tmp_path / "broken.c"
    broken.write_text("int answer(void) { return 42 }\n")  # missing semicolon
    assert native.load_kernels(broken) is None
    assert "failed" in native.why_not(broken)
    assert list((cache / "kernels").iterdir()) == []  # no library, no temporary folder

    good = tmp_path / "good.c"
    good.write_text("int answer(void) { return 42; }\n")
    library = native.load_kernels(good)
    assert library is not None and library.answer() == 42
    built = list((cache / "kernels").iterdir())
    assert len(built) == 1 and built[0].name.startswith("good-") and built[0].suffix == ".so"

    # A new process (the outcome is kept per process) takes the cached library: no compiling.
    compile_source = native._compile
    native._loaded.pop(good)
    monkeypatch.setattr(native, "_compile", lambda *args: pytest.fail("compiled again"))
    assert native.load_kernels(good).answer() == 42
    # A changed source is another library.
    native._loaded.pop(good)
    good.write_text("int answer(void) { return 43; }\n")
    monkeypatch.setattr(native, "_compile", compile_source)
    assert native.load_kernels(good).answer() == 43
    assert len(list((cache / "kernels").iterdir())) == 2



@needs_kernels
@pytest.mark.parametrize("size, stride", [((13, 9), 2), ((12, 8), 2), ((7, 5), 1)])
def test_depthwise_kernels_against_torch_at_one_and_two_threads(size, stride):
    """One depthwise layer through the kernels, reading a pointwise layer's output before its
    bias and ReLU: output, masks and the doubly masked input gradient against torch's operators
    (float64), and bit for bit the same at one and two threads."""
    from dreamsound.models.yamnet.padding import tf_same_padding

    generator = torch.Generator().manual_seed(size[0] * stride)
    n, channels, (height, width) = 3, 32, size
    z = torch.randn(n, height, width, channels, generator=generator)  # before bias and ReLU
    z_bias = torch.randn(channels, generator=generator)
    weight = torch.randn(channels, 1, 3, 3, generator=generator)
    bias = torch.randn(channels, generator=generator)
    top, bottom = tf_same_padding(height, 3, stride)
    left, right = tf_same_padding(width, 3, stride)

    reference_in = z.double().clone().requires_grad_(True)
    a = torch.relu(reference_in + z_bias.double()).permute(0, 3, 1, 2)
    reference = torch.relu(torch.nn.functional.conv2d(
        torch.nn.functional.pad(a, (left, right, top, bottom)), weight.double(), bias.double(),
        stride=stride, groups=channels)).permute(0, 2, 3, 1)
    out_h, out_w = reference.shape[1:3]
    upstream = torch.randn(reference.shape, generator=generator)
    (reference_grad,) = torch.autograd.grad(reference, reference_in, upstream.double())

    library, taps = fused.kernels(), weight.reshape(channels, 9).t().contiguous()
    runs = []
    for threads in (1, 2):
        y = torch.empty(n, out_h, out_w, channels)
        y_mask, x_mask = fused._mask(y.numel()), fused._mask(z.numel())
        geometry = (n, height, width, channels, out_h, out_w, stride, top, left)
        library.conv3x3_forward(z.data_ptr(), channels, z_bias.data_ptr(), taps.data_ptr(),
                                bias.data_ptr(), y.data_ptr(), y_mask.data_ptr(),
                                x_mask.data_ptr(), threads, *geometry)
        grad = torch.empty(z.shape)
        library.conv3x3_backward(upstream.data_ptr(), y_mask.data_ptr(), taps.data_ptr(),
                                 channels, x_mask.data_ptr(), grad.data_ptr(), threads,
                                 *geometry)
        runs.append((y, y_mask, x_mask, grad))
    for first, second in zip(*runs, strict=True):
        assert torch.equal(first, second)
    y, _, _, grad = runs[0]
    torch.testing.assert_close(y.double(), reference.detach(), rtol=0, atol=1e-5)
    torch.testing.assert_close(grad.double(), reference_grad, rtol=0, atol=1e-5)
