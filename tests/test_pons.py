"""irmas-pons: parity with ``../shared/pons/reference_outputs.npz``, the CLI, gradients, bad input.

The reference outputs come from an independent PyTorch re-implementation of the authors' Keras 1 /
Theano model (see ``../shared/pons/README.md``); the files are read in place (AGPL-3.0 weights:
never copied into the repository; tests copy them to ``tmp_path`` only).

Measured (CPU, float32): log-mel ≤ 4.2e-5 dB from the 12 kHz waveforms; logits ≤ 2.7e-6 from
the reference patches and ≤ 3.6e-6 end to end; probabilities ≤ 4.8e-7.
"""

from __future__ import annotations

import json
import math
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dreamsound.cli import app
from dreamsound.errors import WeightsError
from dreamsound.models import pons
from dreamsound.models.registry import load_model
from dreamsound.models.weights import cached_path

CLIPS = ("anchor_clip", "cat", "whistle", "loop")
#: dB of the authors' features; float32 rounding of values up to ~50 dB is ~4e-6 per operation.
LOG_MEL_TOLERANCE_DB = 1e-3
LOGIT_TOLERANCE = 1e-4
PROBABILITY_TOLERANCE = 1e-3

runner = CliRunner()


@pytest.fixture(scope="module")
def pons_dir(shared: Path) -> Path:
    folder = shared / "pons"
    if not (folder / "singlelayer.hdf5").is_file():
        pytest.skip(f"{folder} has no singlelayer.hdf5: the irmas-pons weights are needed")
    return folder


@pytest.fixture(scope="module")
def reference(pons_dir: Path):
    return np.load(pons_dir / "reference_outputs.npz")


@pytest.fixture(scope="module")
def model(pons_dir: Path) -> pons.PonsClassifier:
    net = pons.build_from_files(pons_dir / "singlelayer.hdf5", pons_dir / "singlelayer_mean.npy")
    net.requires_grad_(False)
    return net


def _wave(reference, clip: str) -> torch.Tensor:
    return torch.from_numpy(reference[f"{clip}/wave12k"])


# -- facts ---------------------------------------------------------------------------------------


def test_class_order_and_names(pons_dir: Path, model) -> None:
    with open(pons_dir / "classes.pkl", "rb") as handle:
        codes = pickle.load(handle, encoding="latin1")  # the authors' Python 2 pickle
    assert list(pons.CLASS_CODES) == codes
    assert model.class_codes == codes
    assert model.class_names == ["cello", "piano", "violin", "clarinet", "organ",
                                 "acoustic guitar", "trumpet", "flute", "saxophone",
                                 "electric guitar", "voice"]
    assert model.resolve_class("flu") == model.resolve_class("flute") == 7
    # Keras counts 61,867 (with each BN's trainable gamma and beta); folded into the convs here.
    assert sum(p.numel() for p in model.network.parameters()) == 61867 - sum(
        b.filters * 2 for b in pons.BRANCHES)


def test_shared_files_match_the_registry_digests(pons_dir: Path) -> None:
    from dreamsound.models.weights import sha256_file

    assert sha256_file(pons_dir / "singlelayer.hdf5") == pons.PONS_WEIGHTS.sha256
    assert sha256_file(pons_dir / "singlelayer_mean.npy") == pons.PONS_MEAN.sha256
    assert (pons_dir / "singlelayer.hdf5").stat().st_size == pons.PONS_WEIGHTS.size
    assert (pons_dir / "singlelayer_mean.npy").stat().st_size == pons.PONS_MEAN.size


def test_reference_patches_are_log_mel_before_the_mean(reference) -> None:
    # The npz's patches are the log-mel cut into 128-frame tiles, *before* the mean is
    # subtracted: the network must be fed `patches - mean`.
    for clip in CLIPS:
        log_mel, patches = reference[f"{clip}/log_mel"], reference[f"{clip}/patches"]
        n = patches.shape[0]
        assert n == log_mel.shape[1] // 128
        tiles = log_mel[:, :n * 128].reshape(96, n, 128).transpose(1, 0, 2)
        np.testing.assert_array_equal(patches, tiles)


# -- parity --------------------------------------------------------------------------------------


@pytest.mark.parametrize("clip", CLIPS)
def test_log_mel_matches_reference(model, reference, clip: str) -> None:
    with torch.no_grad():
        log_mel = model.log_mel(_wave(reference, clip))
    features = pons.pons_features(log_mel).numpy()
    expected = reference[f"{clip}/log_mel"]
    assert features.shape == expected.shape
    assert np.abs(features - expected).max() <= LOG_MEL_TOLERANCE_DB
    # The top-dB clamp is relative to the clip's maximum (80 dB of features below it).
    assert features.max() - features.min() == pytest.approx(80.0, abs=1e-3)


@pytest.mark.parametrize("clip", CLIPS)
def test_network_matches_reference_on_reference_patches(model, reference, clip: str) -> None:
    patches = torch.from_numpy(reference[f"{clip}/patches"]).unsqueeze(1)
    with torch.no_grad():
        logits, embeddings = model.network.from_input(patches - model.network.mean)
    assert embeddings.shape == (patches.shape[0], 1792)
    assert np.abs(logits.numpy() - reference[f"{clip}/logits"]).max() <= LOGIT_TOLERANCE


@pytest.mark.parametrize("clip", CLIPS)
def test_clip_probabilities_end_to_end(model, reference, clip: str) -> None:
    with torch.no_grad():
        out = model(_wave(reference, clip))
    probs = reference[f"{clip}/probs"]
    assert np.abs(out.logits.numpy() - reference[f"{clip}/logits"]).max() <= LOGIT_TOLERANCE
    assert np.abs(out.scores.numpy() - probs).max() <= PROBABILITY_TOLERANCE
    assert np.abs(out.clip_scores.numpy() - probs.mean(axis=0)).max() <= PROBABILITY_TOLERANCE
    assert torch.allclose(out.scores.sum(dim=1), torch.ones(len(probs)))  # softmax per patch


def test_clip_top_classes_as_published_in_the_kit(model, reference) -> None:
    expected = {"anchor_clip": ["sax", "tru", "vio"], "cat": ["flu"], "whistle": ["flu"],
                "loop": ["flu", "cla", "org"]}
    for clip, codes in expected.items():
        with torch.no_grad():
            scores = model(_wave(reference, clip)).clip_scores
        top = [model.class_codes[i] for i in scores.argsort(descending=True)[:len(codes)]]
        assert top == codes, clip


# -- front-end ------------------------------------------------------------------------------------


def test_frames_patches_and_short_input(model) -> None:
    fe = model.front_end
    assert fe(torch.zeros(2, 41041)).shape == (2, 1 + 41041 // 256, 96)
    assert fe.config.padded_length(41041) == 41041 + 512
    tone = 0.3 * torch.sin(2 * math.pi * 440 * torch.arange(12000) / 12000)
    short = fe(tone)  # 1 s is repeated up to 3 s
    assert short.shape == (1 + 36000 // 256, 96)
    assert torch.equal(short, fe(tone.repeat(3)))
    assert fe.patches(short).shape == (1, 128, 96)  # the 13-frame tail is dropped
    with pytest.raises(ValueError, match="non-empty"):
        fe(torch.zeros(0))


def test_floor_and_mel_db_scale(model) -> None:
    fe = model.front_end
    assert fe.floor == pytest.approx(math.log(10 ** -2.5))
    assert float(fe.mel_db(torch.tensor(fe.floor))) == pytest.approx(-50.0)
    g = torch.Generator().manual_seed(0)
    noise = 0.05 * torch.randn(40000, generator=g)
    # 1 dB of audio is 1 dB of mel_db and 2 dB of the authors' features.
    louder = fe(noise * 10 ** (6 / 20)) - fe(noise)
    assert torch.allclose(fe.mel_db(louder), torch.full_like(louder, 6.0), atol=1e-3)
    assert torch.allclose(pons.pons_features(louder), torch.full((96, louder.shape[0]), 12.0),
                          atol=2e-3)
    assert torch.allclose(fe.unlog(fe(noise)), fe.power_mel(fe.stft(fe.pad(noise)).abs().square()),
                          rtol=1e-4)


def test_front_end_directional_derivative_float64(model) -> None:
    fe = pons.PonsFrontEnd().double()
    g = torch.Generator().manual_seed(1)
    x = (0.1 * torch.randn(36000, generator=g, dtype=torch.float64)).requires_grad_(True)
    weights = torch.randn(141, 96, generator=g, dtype=torch.float64)
    (fe(x) * weights).sum().backward()
    direction = torch.randn(36000, generator=g, dtype=torch.float64)
    h = 1e-6
    with torch.no_grad():
        numeric = ((fe(x + h * direction) - fe(x - h * direction)) * weights).sum() / (2 * h)
    analytic = (x.grad * direction).sum()
    assert float(analytic) == pytest.approx(float(numeric), rel=1e-5)


def test_invert_round_trip_is_aligned(model, reference) -> None:
    fe = model.front_end
    wave = _wave(reference, "whistle")
    log_mel = fe(wave)
    # An unchanged log-mel with its reference comes back exactly (censored floor bands keep the
    # reference's power), and sample 0 is sample 0 (the centring is removed).
    back = fe.invert(log_mel, reference_waveform=wave, n_iter=0, length=wave.shape[0])
    assert back.shape == wave.shape
    assert float((back - wave).square().sum() / wave.square().sum()) < 1e-8
    generator = torch.Generator().manual_seed(0)
    free = fe.invert(log_mel, n_iter=16, generator=generator, length=wave.shape[0])
    rmse = float((fe.mel_db(fe(free)) - fe.mel_db(log_mel)).square().mean().sqrt())
    assert rmse < 1.0


def test_fit_waveform_brings_the_log_mel_closer(model, reference) -> None:
    fe = model.front_end
    wave = _wave(reference, "loop")[:36000]
    target = fe(wave).clone()
    target[:, 30:40] += 4.0 / 20 * math.log(10)  # +4 dB in ten bands
    start = fe.invert(target, reference_waveform=wave, n_iter=8, length=wave.shape[0])
    fitted = fe.fit_waveform(start, target, n_iter=5)
    before = float((fe(start) - target).square().mean())
    after = float((fe(fitted) - target).square().mean())
    assert fitted.shape == wave.shape and after < before


# -- network ---------------------------------------------------------------------------------------


def test_named_layers_and_shapes(model, reference) -> None:
    layers = model.named_layers()
    assert list(layers) == ["branch_5x1", "branch_5x3", "branch_5x5", "branch_80x1",
                            "branch_80x3", "branch_80x5", "logits"]
    shapes = {}
    hooks = [module.register_forward_hook(
        lambda _m, _i, out, name=name: shapes.__setitem__(name, tuple(out.shape)))
        for name, module in layers.items()]
    try:
        with torch.no_grad():
            model(_wave(reference, "cat"))
    finally:
        for hook in hooks:
            hook.remove()
    filters = {"5x1": 128, "5x3": 64, "5x5": 32, "80x1": 128, "80x3": 64, "80x5": 32}
    for kernel, count in filters.items():
        assert shapes[f"branch_{kernel}"] == (2, count, 96, 128)
    assert shapes["logits"] == (2, 11)


def test_network_sees_an_edited_log_mel_with_its_floor_raised(model, reference) -> None:
    with torch.no_grad():
        log_mel = model.log_mel(_wave(reference, "loop"))
        edited = log_mel.clone()
        edited.view(-1)[edited.argmax()] += 0.5  # the loudest band 4.3 dB louder
        floored = torch.maximum(edited, edited.max() - pons.TOP_NEPERS)
        raw = model.network(model.front_end.patches(edited).unsqueeze(1))[0]
        assert torch.equal(model.logits_from_log_mel(edited),
                           model.network(model.front_end.patches(floored).unsqueeze(1))[0])
        assert not torch.allclose(model.logits_from_log_mel(edited), raw)
        # A log-mel from the front-end is already clamped: unchanged.
        assert torch.equal(model.logits_from_log_mel(log_mel),
                           model.network(model.front_end.patches(log_mel).unsqueeze(1))[0])


def test_gradient_step_on_the_waveform_raises_a_class_logit(model, reference) -> None:
    wave = _wave(reference, "whistle").clone().requires_grad_(True)
    violin = model.resolve_class("violin")
    logit = model(wave).logits[:, violin].mean()
    (gradient,) = torch.autograd.grad(logit, wave)
    before = float(logit.detach())
    assert torch.isfinite(gradient).all() and gradient.abs().max() > 0
    with torch.no_grad():
        step = 1e-3 * gradient / gradient.abs().max()
        after = model(wave.detach() + step).logits[:, violin].mean()
    assert float(after) > before


# -- loading, CLI and bad input -----------------------------------------------------------------


def test_classify_whistle_names_flute(pons_dir: Path, shared: Path) -> None:
    whistle = shared / "audio" / "whistle.wav"
    result = runner.invoke(app, ["classify", str(whistle), "--model", "irmas-pons",
                                 "--weights", str(pons_dir), "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["model"] == "irmas-pons"
    top = doc["top"][0]
    assert top["name"] == "flute" and pons.CLASS_CODES[top["index"]] == "flu"
    assert top["score"] > 0.5


def test_env_vars_point_at_both_files(pons_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("DREAMSOUND_IRMAS_PONS_WEIGHTS", str(pons_dir / "singlelayer.hdf5"))
    monkeypatch.setenv("DREAMSOUND_IRMAS_PONS_MEAN", str(pons_dir / "singlelayer_mean.npy"))
    net = load_model("irmas-pons", device="cpu")
    assert isinstance(net, pons.PonsClassifier) and net.sample_rate == 12000


def _copy(pons_dir: Path, folder: Path, *, weights_name: str = "singlelayer.hdf5",
          mean: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(pons_dir / "singlelayer.hdf5", folder / weights_name)
    if mean:
        shutil.copyfile(pons_dir / "singlelayer_mean.npy", folder / "singlelayer_mean.npy")
    return folder


def test_weights_option_takes_a_folder_or_the_hdf5(pons_dir: Path, tmp_path: Path) -> None:
    official = "epoch.115-val_loss.0.902-fbeta.0.673.hdf5"  # the name in the authors' repo
    folder = _copy(pons_dir, tmp_path / "official", weights_name=official)
    assert isinstance(load_model("irmas-pons", folder, "cpu"), pons.PonsClassifier)
    assert isinstance(load_model("irmas-pons", folder / official, "cpu"), pons.PonsClassifier)


def test_hdf5_without_its_mean_says_where_the_mean_goes(pons_dir: Path, tmp_path: Path) -> None:
    folder = _copy(pons_dir, tmp_path / "lonely", mean=False)
    with pytest.raises(WeightsError) as exc:
        load_model("irmas-pons", folder / "singlelayer.hdf5", "cpu")
    message = str(exc.value)
    assert "\n" not in message
    for part in ("singlelayer_mean.npy", pons.PONS_MEAN.url, pons.PONS_MEAN.sha256,
                 str(folder / "singlelayer_mean.npy")):
        assert part in message, part


def test_missing_weights_offline_names_both_files() -> None:
    with pytest.raises(WeightsError) as exc:
        load_model("irmas-pons", device="cpu")
    message = str(exc.value)
    assert "\n" not in message and "DREAMSOUND_OFFLINE=1" in message
    for spec in (pons.PONS_WEIGHTS, pons.PONS_MEAN):
        for part in (spec.filename, spec.url, spec.sha256, str(cached_path(spec)),
                     f"${spec.env_var}"):
            assert part in message, part
    assert "dreamsound models fetch irmas-pons" in message


def test_missing_weights_through_the_cli_is_one_line(shared: Path) -> None:
    result = runner.invoke(app, ["classify", str(shared / "audio" / "whistle.wav"),
                                 "--model", "irmas-pons"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert "singlelayer.hdf5" in lines[0] and "singlelayer_mean.npy" in lines[0]


@pytest.mark.parametrize("damage", ["truncated", "text", "wrong_layers"])
def test_corrupt_hdf5_is_a_clear_error(pons_dir: Path, shared: Path, tmp_path: Path,
                                      damage: str) -> None:
    folder = _copy(pons_dir, tmp_path / damage)
    target = folder / "singlelayer.hdf5"
    if damage == "truncated":
        target.write_bytes(target.read_bytes()[:300_000])
    elif damage == "text":
        target.write_text("<html>404 Not Found</html>\n")
    else:
        import h5py

        with h5py.File(target, "w") as h5:
            h5.create_dataset("model_weights/1_5_conv/1_5_conv_W", data=np.zeros((3, 1, 5, 1)))
    with pytest.raises(WeightsError) as exc:
        load_model("irmas-pons", folder, "cpu")
    message = str(exc.value)
    assert "\n" not in message and str(target) in message
    needle = {"truncated": "damaged or truncated", "text": "not an HDF5 file",
              "wrong_layers": "not the irmas-pons single-layer"}[damage]
    assert needle in message
    result = runner.invoke(app, ["classify", str(shared / "audio" / "whistle.wav"), "-m",
                                 "irmas-pons",
                                 "--weights", str(folder)])
    assert result.exit_code == 2 and result.output.startswith("error:")
    assert "Traceback" not in result.output


@pytest.mark.parametrize("content", ["shape", "text"])
def test_corrupt_mean_is_a_clear_error(pons_dir: Path, tmp_path: Path, content: str) -> None:
    folder = _copy(pons_dir, tmp_path / content)
    mean = folder / "singlelayer_mean.npy"
    if content == "shape":
        np.save(mean, np.zeros((128, 96)))
    else:
        mean.write_text("not numpy")
    with pytest.raises(WeightsError, match=r"singlelayer_mean|96, 128") as exc:
        load_model("irmas-pons", folder, "cpu")
    assert str(mean) in str(exc.value)
