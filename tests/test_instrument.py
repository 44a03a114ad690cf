"""The instrument CNN: contract, gradients, weights files, and the shipped default model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import dreamsound
from dreamsound.data.irmas import IRMAS_CODES, IRMAS_NAMES, read_training_set
from dreamsound.errors import DataError, WeightsError
from dreamsound.models.instrument import (
    FRONT_END,
    Architecture,
    InstrumentClassifier,
    class_names_and_codes,
    load_weights_file,
    new_model,
    read_config,
    save_weights_file,
)

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "models" / "instrument_cnn"
SR = FRONT_END.sample_rate


def patch_count(n_samples: int) -> int:
    """1 s windows the model scores for a clip of ``n_samples`` at 22,050 Hz."""
    return FRONT_END.n_patches(FRONT_END.n_frames(FRONT_END.padded_length(n_samples)))


@pytest.fixture(scope="module")
def model() -> InstrumentClassifier:
    torch.manual_seed(0)
    net = new_model()
    net.eval()
    # Give batch-norm non-trivial statistics, as a trained model has.
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return net


def _tone(seconds: float, rng: np.random.Generator) -> torch.Tensor:
    t = np.arange(int(SR * seconds)) / SR
    x = 0.3 * np.sin(2 * np.pi * 330 * t) + 0.05 * rng.standard_normal(t.size)
    return torch.tensor(x, dtype=torch.float32)


def test_front_end_facts():
    # IRMAS / Han et al. 2017: 22,050 Hz, n_fft 1024, hop 512, 128 mel bands, 1 s = 43 frames.
    assert (FRONT_END.sample_rate, FRONT_END.n_fft, FRONT_END.hop_length, FRONT_END.n_mels) == \
        (22050, 1024, 512, 128)
    assert FRONT_END.patch_frames == 43
    assert abs(FRONT_END.min_samples / SR - 1.0) < 0.03


def test_forward_shapes(model, rng):
    out = model(_tone(3.0, rng))
    n = patch_count(3 * SR)
    assert n == 5
    assert out.logits.shape == (n, 11) and out.scores.shape == (n, 11)
    assert out.embeddings.shape == (n, Architecture().embedding)
    assert out.log_mel.shape[1] == 128
    assert torch.all((out.scores > 0) & (out.scores < 1))
    assert torch.allclose(out.scores, torch.sigmoid(out.logits))  # independent sigmoids
    assert model.class_names == list(IRMAS_NAMES) and model.class_codes == list(IRMAS_CODES)
    assert model.sample_rate == 22050


@pytest.mark.parametrize("seconds", [0.2, 1.0, 1.3, 7.9])
def test_any_length_gives_whole_patches(model, rng, seconds):
    out = model(_tone(seconds, rng))
    assert out.logits.shape == (patch_count(int(SR * seconds)), 11)
    assert torch.isfinite(out.logits).all()


def test_named_layers(model, rng):
    layers = model.named_layers()
    expected = [f"block{b}/conv{c}" for b in range(1, 5) for c in (1, 2)] + ["embedding",
                                                                             "logits"]
    assert list(layers) == expected
    seen = {}
    hooks = [module.register_forward_hook(lambda m, i, o, name=name: seen.setdefault(name, o))
             for name, module in layers.items()]
    try:
        out = model(_tone(2.0, rng))
    finally:
        for hook in hooks:
            hook.remove()
    n = out.logits.shape[0]
    assert seen["block1/conv1"].shape == (n, 16, 43, 128)
    assert seen["block4/conv2"].shape[:2] == (n, 128)
    assert torch.equal(seen["embedding"], out.embeddings)
    assert torch.equal(seen["logits"], out.logits)


def test_gradient_reaches_the_waveform_and_ascent_raises_the_target(model, rng):
    target = model.resolve_class("violin")
    assert target == IRMAS_CODES.index("vio") == model.resolve_class("vio")
    waveform = _tone(3.0, rng).requires_grad_(True)
    logit = model(waveform).logits[:, target].mean()
    logit.backward()
    grad = waveform.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().max() > 0
    with torch.no_grad():
        stepped = waveform + 1e-3 * grad / grad.abs().max()
        assert model(stepped).logits[:, target].mean() > logit.detach()


def test_save_load_round_trip(model, tmp_path, rng):
    model.threshold = 0.37
    path = save_weights_file(model, tmp_path / "m.safetensors")
    loaded = load_weights_file(path)
    assert loaded.threshold == pytest.approx(0.37)
    assert read_config(path).architecture == model.config.architecture
    wave = _tone(2.0, rng)
    with torch.no_grad():
        assert torch.allclose(loaded.eval()(wave).logits, model(wave).logits, atol=1e-6)
    # Other sizes load from their own metadata.
    small = new_model(["cel", "vio"], architecture=Architecture(channels=(4, 8, 8, 8),
                                                                embedding=16))
    small_path = save_weights_file(small, tmp_path / "small.safetensors")
    loaded_small = load_weights_file(small_path)
    assert loaded_small.class_names == ["cello", "violin"]
    assert loaded_small.config.architecture.channels == (4, 8, 8, 8)


def test_broken_weights_are_clear_errors(model, tmp_path):
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"this is not a safetensors file" * 10)
    with pytest.raises(WeightsError, match="cannot read instrument weights"):
        load_weights_file(garbage)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(3)}, str(foreign))
    with pytest.raises(WeightsError, match="no configuration"):
        load_weights_file(foreign)
    # Right format tag, tensors that do not fit the configuration.
    path = save_weights_file(model, tmp_path / "ok.safetensors")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    config = json.loads(metadata["config"])
    config["architecture"]["channels"] = [8, 16, 32, 64]
    metadata["config"] = json.dumps(config)
    tensors = {k: v for k, v in model.network.state_dict().items()}
    mismatched = tmp_path / "mismatched.safetensors"
    save_file(tensors, str(mismatched), metadata=metadata)
    with pytest.raises(WeightsError, match="do not fit"):
        load_weights_file(mismatched)
    with pytest.raises(WeightsError, match="not found"):
        dreamsound.load_model("instrument", weights=tmp_path / "missing.safetensors")


# --- the shipped default ---------------------------------------------------------------------


def test_shipped_model_loads_offline():
    weights = SHIPPED / "model.safetensors"
    assert weights.is_file(), "models/instrument_cnn/model.safetensors must ship"
    assert weights.stat().st_size <= 10 * 1024 * 1024
    # The registry's record of the shipped file matches it (retraining means updating both).
    from dreamsound.models.instrument import WEIGHTS
    from dreamsound.models.weights import sha256_file
    assert weights.stat().st_size == WEIGHTS.size
    assert sha256_file(weights) == WEIGHTS.sha256
    net = dreamsound.load_model("instrument", device="cpu")
    assert isinstance(net, InstrumentClassifier)
    assert net.class_names == list(IRMAS_NAMES)
    assert 0.0 < net.threshold < 1.0
    config = json.loads((SHIPPED / "config.json").read_text())
    assert config["threshold"] == pytest.approx(net.threshold)
    assert class_names_and_codes() == (list(IRMAS_NAMES), list(IRMAS_CODES))
    card = (SHIPPED / "MODEL_CARD.md").read_text()
    assert "not trained on IRMAS" in card.lower() or "NOT trained on IRMAS" in card


@pytest.fixture(scope="module")
def fresh_solo_clips(tmp_path_factory) -> Path:
    """Two solo clips per class, rendered with seeds the shipped model never saw."""
    if shutil.which("fluidsynth") is None:
        pytest.skip("the `fluidsynth` program is not on PATH (apt install fluidsynth): cannot "
                    "render fresh clips")
    font = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")
    if not font.is_file():
        pytest.skip(f"{font} is missing (apt install timgm6mb-soundfont)")
    out = tmp_path_factory.mktemp("fresh")
    # As a module, as documented (tests/test_render.py runs it as a file).
    subprocess.run([sys.executable, "-m", "scripts.data.render_trainset", "--out", str(out),
                    "--soundfonts", str(font), "--per-class", "2", "--mix-share", "0", "--seed",
                    "424242", "--workers", "2", "--quiet"], check=True, timeout=300, cwd=REPO)
    return out


def test_default_model_labels_fresh_renders(fresh_solo_clips):
    from dreamsound.api import classify

    net = dreamsound.load_model("instrument", device="cpu")
    excerpts = read_training_set(fresh_solo_clips)
    assert len(excerpts) == 22
    wrong = []
    for excerpt in excerpts:
        result = classify(excerpt.path, model=net)
        best = result.top(1)[0][1]
        if best != IRMAS_NAMES[IRMAS_CODES.index(excerpt.label)]:
            wrong.append(f"{excerpt.path.name}: {best}")
    # Every class is recognised; at most one clip of 22 may slip.
    assert len(wrong) <= 1, wrong
    assert len({w.split("__[")[1][:3] for w in wrong}) <= 1


def test_cross_soundfont_scoring_by_program(fresh_solo_clips, tmp_path, capsys):
    """scripts/experiments/cross_soundfont.py's scorer: solo/mixture split, per-program rows,
    and the ``--programs`` filter that scores only the presets a training set cannot have seen."""
    from scripts.experiments import cross_soundfont

    net = dreamsound.load_model("instrument", device="cpu")
    everything = cross_soundfont.evaluate_folder(net, fresh_solo_clips)
    assert (everything["n_solo"], everything["n_mix"], everything["mix_top1"]) == (22, 0, None)
    assert sum(n for _, n in everything["per_program_top1"].values()) == 22
    assert {"vio:40", "cel:42", "cla:71"} <= set(everything["per_program_top1"])

    strings = cross_soundfont.evaluate_folder(net, fresh_solo_clips, programs=[40, 42])
    assert strings["n_solo"] == 4 and set(strings["per_class_top1"]) == {"vio", "cel"}
    assert set(strings["per_program_top1"]) == {"vio:40", "cel:42"}
    assert strings["solo_top1"] == pytest.approx(
        np.mean([everything["per_class_top1"][c] for c in ("vio", "cel")]))
    with pytest.raises(DataError, match="no test clips"):
        cross_soundfont.evaluate_folder(net, fresh_solo_clips, programs=[127])
    # A mean-score ensemble of one model with itself scores exactly like the model.
    twice = cross_soundfont.evaluate_folder([net, net], fresh_solo_clips, programs=[40, 42])
    assert twice["per_program_top1"] == strings["per_program_top1"]
    # Any registered model, among the 11 instruments through the concept map: the instrument
    # model this way agrees with its own scorer up to a clip; musicnn, which has no clarinet
    # tag, never answers clarinet, and its clarinet clips count as misses.
    concepts = cross_soundfont.evaluate_folder_concepts(net, fresh_solo_clips)
    assert abs(concepts["solo_top1"] - everything["solo_top1"]) <= 1 / 22
    tagger = dreamsound.load_model("musicnn", device="cpu")
    heard = cross_soundfont.evaluate_folder_concepts(tagger, fresh_solo_clips)
    confusion = np.array(heard["confusion"]["rows_true_cols_predicted"])
    assert confusion.sum() == 22 and confusion[:, IRMAS_CODES.index("cla")].sum() == 0
    assert heard["per_class_top1"]["cla"] == 0.0
    assert cross_soundfont.main(["evaluate", "--model", "musicnn", "--test",
                                 str(fresh_solo_clips)]) == 0
    assert "| " + fresh_solo_clips.name + " |" in capsys.readouterr().out
    # Bad input on the command line: one line on stderr, exit code 2, no traceback.
    for argv in (["evaluate", "--weights", str(tmp_path / "none.safetensors"), "--test",
                  str(fresh_solo_clips)],
                 ["evaluate", "--weights", str(SHIPPED / "model.safetensors"), "--test",
                  str(fresh_solo_clips), "--programs", "127"],
                 ["evaluate", "--test", str(fresh_solo_clips)],
                 ["evaluate", "--model", "musicnn", "--weights", "a", "b", "--test",
                  str(fresh_solo_clips)]):
        assert cross_soundfont.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "\n" not in err and "Traceback" not in err
