"""``dreamsound train``: the loop on a tiny synthetic IRMAS-layout set, checkpoints, bad input."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import dreamsound
from dreamsound.errors import DataError
from dreamsound.models.instrument import Architecture, load_weights_file
from dreamsound.train import (
    Augmentation,
    TrainProgress,
    augment,
    choose_threshold,
    f1_scores,
    mixup,
    split_by_group,
    train,
)

TINY = Architecture(channels=(4, 8, 8, 8), embedding=16)  # for the mechanics
SMALL = Architecture(channels=(8, 8, 16, 16), embedding=32, dense_dropout=0.2)  # for learning
# Milder than the default (made for cross-soundfont robustness), so that three toy classes are
# learned in a few dozen steps from every seed tried (0-3).
LIGHT = Augmentation(eq_db=2.0, tilt_db=3.0, shift_bands=0.5, reverb_prob=0.0, lowpass_prob=0.0,
                     highpass_prob=0.0, mix_prob=0.0, noise_prob=0.0, mask_prob=0.1)
RATE = 44100


def _clip(kind: str, rng: np.random.Generator, seconds: float = 1.5) -> np.ndarray:
    """Three easily told apart sound families standing in for instruments."""
    t = np.arange(int(RATE * seconds)) / RATE
    if kind == "cel":    # low, harmonic-rich (a sawtooth-like sum)
        f0 = rng.uniform(70, 140)
        x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 12))
    elif kind == "flu":  # high, nearly pure, with breath noise
        x = np.sin(2 * np.pi * rng.uniform(1200, 2000) * t) + 0.05 * rng.standard_normal(t.size)
    else:                # plucks: decaying bursts of band noise
        x = np.zeros_like(t)
        for start in rng.uniform(0, seconds - 0.3, 4):
            n = int(0.3 * RATE)
            i = int(start * RATE)
            x[i:i + n] += rng.standard_normal(n) * np.exp(-np.arange(n) / (0.05 * RATE))
    x = 0.5 * x / np.max(np.abs(x))
    return np.stack([x, x], axis=1)


def make_set(root: Path, *, per_class: int = 12, classes=("cel", "flu", "gac"),
             seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for code in classes:
        for i in range(per_class):
            path = root / code / f"{i:03d}__[{code}][nod][cla]{i:04d}__1.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, _clip(code, rng), RATE, subtype="PCM_16")
    return root


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory) -> Path:
    return make_set(tmp_path_factory.mktemp("data") / "IRMAS-TrainingData")


def test_train_writes_a_loadable_model(tiny_set, tmp_path):
    events: list[TrainProgress] = []
    result = train(tiny_set, tmp_path / "out", epochs=5, patience=5, batch_size=32,
                   crops_per_clip=8, architecture=SMALL, augmentation=LIGHT, device="cpu",
                   progress=events.append)
    assert result.classes == ["cel", "flu", "gac"]
    assert result.n_train + result.n_val == 36 and result.n_val == 6  # 15 % of 12, per class
    assert result.epochs_run == 5
    # Three families this different are learned in a few dozen steps.
    assert result.val_accuracy >= 0.8
    assert 0.0 < result.threshold < 1.0
    for path in (result.weights_path, result.config_path, result.log_path):
        assert path.is_file()
    config = json.loads(result.config_path.read_text())
    assert config["class_codes"] == ["cel", "flu", "gac"]
    assert config["threshold"] == pytest.approx(result.threshold)
    assert config["front_end"]["n_mels"] == 128
    assert config["architecture"]["channels"] == [8, 8, 16, 16]
    assert config["data"]["per_class"] == {"cel": 12, "flu": 12, "gac": 12}
    assert config["validation"]["val_accuracy"] == pytest.approx(result.val_accuracy)
    log = json.loads(result.log_path.read_text())
    assert log["status"] == "finished" and len(log["epochs"]) == 5
    assert log["best_epoch"] == result.best_epoch
    assert {e.stage for e in events} == {"load", "epoch", "validated"}
    # The written model is the best epoch's and loads through the registry with --weights.
    model = dreamsound.load_model("instrument", weights=result.weights_path, device="cpu")
    assert model.class_names == ["cello", "flute", "acoustic guitar"]
    assert model.threshold == pytest.approx(result.threshold)
    rng = np.random.default_rng(99)
    wave = torch.tensor(_clip("flu", rng, 3.0).mean(axis=1) [::2].copy(), dtype=torch.float32)
    with torch.no_grad():
        assert model(wave).clip_scores.argmax() == 1


def test_same_seed_same_model(tiny_set, tmp_path):
    kwargs = dict(epochs=1, batch_size=32, architecture=TINY, device="cpu", seed=3)
    a = train(tiny_set, tmp_path / "a", **kwargs)
    b = train(tiny_set, tmp_path / "b", **kwargs)
    wa, wb = load_weights_file(a.weights_path), load_weights_file(b.weights_path)
    for (name, pa), pb in zip(wa.network.state_dict().items(), wb.network.state_dict().values()):
        assert torch.equal(pa, pb), name


def test_interrupted_training_keeps_the_last_good_checkpoint(tiny_set, tmp_path):
    out = tmp_path / "out"

    def stop_in_epoch_two(event: TrainProgress) -> None:
        if event.stage == "epoch" and event.epoch == 2 and event.done == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny_set, out, epochs=4, batch_size=16, architecture=TINY, device="cpu",
              progress=stop_in_epoch_two)
    model = load_weights_file(out / "model.safetensors")  # epoch 1's checkpoint, intact
    assert model.config.extra["training"]["best_epoch"] == 1
    log = json.loads((out / "train_log.json").read_text())
    assert log["status"] == "interrupted" and len(log["epochs"]) == 1
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors",
                                                     "train_log.json"]  # no temp files left


def test_bad_input(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="is empty"):
        train(empty, tmp_path / "o1", epochs=1, architecture=TINY)
    flat = tmp_path / "flat"
    flat.mkdir()
    sf.write(flat / "a.wav", np.zeros((100, 2)), RATE)
    with pytest.raises(DataError, match="no class folders"):
        train(flat, tmp_path / "o2", epochs=1, architecture=TINY)
    broken = tmp_path / "broken"
    for code in ("cel", "vio"):
        (broken / code).mkdir(parents=True)
        for i in range(3):
            (broken / code / f"{i}.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 4)
    with pytest.raises(DataError, match=r"none of the 6 \.wav files could be read"):
        train(broken, tmp_path / "o3", epochs=1, architecture=TINY)
    with pytest.raises(DataError, match="too few files"):
        train(make_set(tmp_path / "one", per_class=1), tmp_path / "o4", epochs=1,
              architecture=TINY)


def test_a_few_unreadable_files_are_skipped(tmp_path, caplog):
    data = make_set(tmp_path / "data", per_class=4, classes=("cel", "flu"))
    (data / "cel" / "zz_broken.wav").write_bytes(b"not audio at all")
    result = train(data, tmp_path / "out", epochs=1, batch_size=8, architecture=TINY,
                   device="cpu")
    config = json.loads(result.config_path.read_text())
    assert config["data"]["skipped"] == 1 and config["data"]["readable"] == 8
    assert "zz_broken.wav" in caplog.text


def test_split_keeps_songs_together_and_stratifies():
    labels = [0] * 10 + [1] * 10
    groups = [f"a{i // 2}" for i in range(10)] + [f"b{i}" for i in range(10)]
    train_idx, val_idx = split_by_group(labels, groups, 0.2, np.random.default_rng(0))
    assert sorted([*train_idx, *val_idx]) == list(range(20))
    val_groups = {groups[i] for i in val_idx}
    assert not val_groups & {groups[i] for i in train_idx}
    assert sum(labels[i] == 0 for i in val_idx) == 2  # one song of two excerpts
    assert sum(labels[i] == 1 for i in val_idx) == 2


def test_threshold_and_f1():
    labels = np.array([0, 1, 2, 2])
    scores = np.array([[0.9, 0.1, 0.2], [0.3, 0.6, 0.1], [0.1, 0.2, 0.55], [0.5, 0.1, 0.7]])
    micro, macro = f1_scores(scores, labels, 0.5)
    # predicted: {0}, {1}, {2}, {0, 2}: TP 4, FP 1, FN 0
    assert micro == pytest.approx(2 * 4 / (2 * 4 + 1 + 0))
    assert macro == pytest.approx(np.mean([2 / 3, 1.0, 1.0]))
    micro, _ = f1_scores(scores, labels, 0.65)  # {0}, {}, {}, {2}: TP 2, FP 0, FN 2
    assert micro == pytest.approx(4 / 6)
    # Only thresholds in (0.5, 0.55] separate every pair; the one nearest 0.5 is chosen.
    threshold, best_micro, best_macro = choose_threshold(scores, labels)
    assert (threshold, best_micro, best_macro) == (0.51, 1.0, 1.0)


def test_augmentation_is_seeded_and_keeps_shapes():
    x = 0.5 * torch.randn(8, 43, 128) - 3.0  # above log(1e-3): exactly invertible
    labels = torch.arange(8) % 3
    a = augment(x, labels, Augmentation(), 1e-3, torch.Generator().manual_seed(1))
    b = augment(x, labels, Augmentation(), 1e-3, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b) and torch.isfinite(a).all()
    off = Augmentation(gain_db=(0.0, 0.0), eq_db=0.0, tilt_db=0.0, shift_bands=0.0,
                       reverb_prob=0.0,
                       lowpass_prob=0.0,
                       highpass_prob=0.0, mix_prob=0.0, noise_prob=0.0, mask_prob=0.0)
    same = augment(x, labels, off, 1e-3, torch.Generator().manual_seed(1))
    assert torch.allclose(same, x, atol=1e-4)


#: Every random change off: what stays is the one change a test turns on.
NO_CHANGE = Augmentation(gain_db=(0.0, 0.0), eq_db=0.0, tilt_db=0.0, shift_bands=0.0,
                         reverb_prob=0.0, lowpass_prob=0.0, highpass_prob=0.0, mix_prob=0.0,
                         noise_prob=0.0, mask_prob=0.0)


def test_vibrato_moves_a_partial_along_the_mel_axis_and_back():
    offset = 1e-3
    frame_s = 512 / 22050
    x = torch.full((1, 43, 128), math.log(offset))
    x[0, :, 60] = math.log(1 + offset)          # one steady partial in band 60
    config = dataclasses.replace(NO_CHANGE, vibrato_prob=1.0, vibrato_bands=2.0,
                                 vibrato_hz=(5.0, 5.0))
    out = augment(x, torch.zeros(1, dtype=torch.long), config, offset,
                  torch.Generator().manual_seed(1), frame_s=frame_s)
    magnitude = (out.exp() - offset)[0]
    centre = (magnitude * torch.arange(128)).sum(dim=1) / magnitude.sum(dim=1)   # [T] bands
    assert torch.allclose(magnitude.sum(dim=1), torch.ones(43), atol=1e-4)  # energy kept
    swing = centre - 60
    assert 0.2 < swing.abs().max() <= 2.0 + 1e-4 and swing.max() > 0 > swing.min()
    # 5 Hz: the centre comes back after one period (~8.6 frames), up to interpolation.
    period = round(1 / (5.0 * frame_s))
    assert (swing[period:] - swing[:-period]).abs().max() < 0.5 * swing.abs().max()


def test_compressor_narrows_the_range_of_loud_frames_only():
    offset = 1e-3
    x = torch.full((2, 43, 128), math.log(0.001 + offset))
    x[:, :10] = math.log(1.0 + offset)      # 10 loud frames, 60 dB above the rest
    x[:, 10:20] = math.log(0.1 + offset)    # then 20 dB down
    config = dataclasses.replace(NO_CHANGE, compress_prob=1.0, compress_ratio=(4.0, 4.0),
                                 compress_threshold_db=(-30.0, -30.0),
                                 compress_release_s=(0.01, 0.01))
    out = augment(x, torch.zeros(2, dtype=torch.long), config, offset,
                  torch.Generator().manual_seed(0))
    level = 20 * torch.log10(out.exp() - offset)[0, :, 0]      # dB per frame, one band
    # 30 dB over the threshold comes out 7.5 dB over it (ratio 4); 10 dB over, 2.5 dB over;
    # frames under the threshold (once the short release has passed) are untouched.
    assert level[5].item() == pytest.approx(-22.5, abs=0.01)
    assert level[15].item() == pytest.approx(-20.0 - 7.5, abs=0.01)
    assert level[30].item() == pytest.approx(-60.0, abs=0.01)
    unused = dataclasses.replace(config, compress_prob=0.0)
    same = augment(x, torch.zeros(2, dtype=torch.long), unused, offset,
                   torch.Generator().manual_seed(0))
    assert torch.allclose(same, x, atol=1e-5)


def test_mixup_blends_magnitudes_and_targets_alike():
    torch.manual_seed(0)  # Beta draws come from torch's global generator
    x = 0.5 * torch.randn(6, 43, 128) - 3.0
    targets = torch.eye(11)[torch.arange(6) % 3]
    mixed, soft = mixup(x, targets, Augmentation(mixup_prob=1.0), 1e-3,
                        torch.Generator().manual_seed(2))
    assert mixed.shape == x.shape and soft.shape == targets.shape
    assert torch.allclose(soft.sum(dim=1), torch.ones(6))
    # Each row is lam * own + (1 - lam) * partner's; recover lam from the targets and check
    # the windows were blended by the same amount, as magnitudes.
    partner = torch.randperm(6, generator=torch.Generator().manual_seed(2))
    magnitude = torch.exp(x) - 1e-3
    for i in range(6):
        if (targets[i] == targets[partner[i]]).all():
            continue  # same class: the targets do not show lam
        lam = float(soft[i] @ targets[i])
        expected = torch.log(lam * magnitude[i] + (1 - lam) * magnitude[partner[i]] + 1e-3)
        assert torch.allclose(mixed[i], expected, atol=1e-4)
    untouched, hard = mixup(x, targets, Augmentation(mixup_prob=0.0), 1e-3,
                            torch.Generator().manual_seed(2))
    assert torch.allclose(untouched, x, atol=1e-4) and torch.equal(hard, targets)


def test_cli_train(tiny_set, tmp_path):
    from typer.testing import CliRunner

    from dreamsound.cli import app

    runner = CliRunner()
    out = tmp_path / "cli"
    result = runner.invoke(app, ["train", str(tiny_set), "--out", str(out), "--epochs", "1",
                                 "--batch-size", "32", "--seed", "1", "--device", "cpu",
                                 "--quiet", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["classes"] == ["cel", "flu", "gac"] and report["epochs_run"] == 1
    assert (out / "model.safetensors").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = runner.invoke(app, ["train", str(empty), "--out", str(tmp_path / "x"), "--quiet"])
    assert bad.exit_code == 2
    assert "is empty" in bad.output and "Traceback" not in bad.output
    assert not (tmp_path / "x").exists()  # bad data leaves no output folder behind


def test_fold_variants_hands_its_augmentation_to_dreamsound_train(tiny_set, tmp_path,
                                                                   monkeypatch):
    from dreamsound.train import loop as training_loop
    from scripts.experiments import cross_soundfont, fold_variants

    # The script patches module globals for the run it starts; put them back afterwards.
    monkeypatch.setattr(training_loop, "Augmentation", training_loop.Augmentation)
    monkeypatch.setattr(cross_soundfont, "train", cross_soundfont.train)
    out = tmp_path / "vib"
    with pytest.raises(SystemExit) as done:
        fold_variants.main(["--vibrato", "0.5", "--compress", "0.25", "--then", "dreamsound",
                            "--", "train", str(tiny_set), "--out", str(out), "--epochs", "1",
                            "--batch-size", "32", "--device", "cpu", "--quiet"])
    assert done.value.code in (0, None)
    settings = json.loads((out / "train_log.json").read_text())["settings"]["augmentation"]
    assert (settings["vibrato_prob"], settings["compress_prob"]) == (0.5, 0.25)
    assert settings["mixup_prob"] == 0.0 and settings["reverb_prob"] == 0.5  # the rest as shipped


def test_cli_train_defaults_match_the_library():
    # The CLI keeps torch out of its import (instant --help), so it restates the defaults.
    import inspect

    import typer

    from dreamsound import cli
    from dreamsound import train as train_module

    library = inspect.signature(train_module.train).parameters
    command = typer.main.get_command(cli.app).commands["train"]
    cli_defaults = {p.name: p.default for p in command.params}
    for name in ("epochs", "batch_size", "lr", "patience", "val_fraction", "seed", "distil",
                 "distil_label", "init", "adversarial_db"):
        assert cli_defaults[name] == library[name].default, name


def _write_teacher(folder: Path, logits_for) -> None:
    """A ``teacher.csv`` for every clip of ``folder``; ``logits_for(code, name)`` -> 11 logits."""
    from dreamsound.data.irmas import IRMAS_CODES

    lines = ["class,file," + ",".join(IRMAS_CODES)]
    for wav in sorted(folder.glob("*/*.wav")):
        code = wav.parent.name
        lines.append(f"{code},{wav.name}," + ",".join(f"{v:g}" for v in logits_for(code,
                                                                                   wav.name)))
    (folder / "teacher.csv").write_text("\n".join(lines) + "\n")


def test_teacher_targets_follow_the_teacher_over_the_model_classes(tmp_path):
    from dreamsound.data.irmas import IRMAS_CODES
    from dreamsound.train.data import DISTIL_TEMPERATURE, LoadedClip, teacher_targets

    folder = make_set(tmp_path / "set", per_class=2)

    def logits_for(code: str, name: str) -> list[float]:
        values = [0.0] * len(IRMAS_CODES)
        values[IRMAS_CODES.index("flu")] = 4.0 if code == "cel" else 0.0  # cellos "sound" flute
        values[IRMAS_CODES.index("vio")] = 50.0  # a class the model lacks: must not count
        return values

    _write_teacher(folder, logits_for)
    clips = [LoadedClip(torch.zeros(1, 1), 1, 0, "g", path)
             for path in sorted((folder / "cel").glob("*.wav"))]
    soft = teacher_targets(clips, ["cel", "flu", "gac"], [folder])
    assert soft.shape == (2, 3)
    flute = np.exp(4.0 / DISTIL_TEMPERATURE)
    assert soft[0].tolist() == pytest.approx([1 / (flute + 2), flute / (flute + 2),
                                              1 / (flute + 2)])
    # A clip the teacher never saw, or a set without a teacher file, is a clear error.
    stranger = LoadedClip(torch.zeros(1, 1), 1, 0, "g", tmp_path / "elsewhere.wav")
    with pytest.raises(DataError, match="no row"):
        teacher_targets([stranger], ["cel"], [folder])
    with pytest.raises(DataError, match=r"teacher\.csv is missing"):
        teacher_targets(clips, ["cel"], [tmp_path])


#: Training settings of the distillation tests (tiny network, a few seconds per model).
_DISTIL_KWARGS = dict(epochs=4, patience=4, batch_size=32, crops_per_clip=8, architecture=SMALL,
                      augmentation=LIGHT, device="cpu", seed=0)


@pytest.fixture(scope="module")
def cello_as_flute(tmp_path_factory) -> dict:
    """A set whose teacher hears every "cel" clip as a flute, the models trained on it with
    labels only, blending 0.9 of the teacher in and keeping the label, and each model's clip
    scores on a fresh cello."""
    from dreamsound.data.irmas import IRMAS_CODES

    root = tmp_path_factory.mktemp("distil")
    folder = make_set(root / "set", per_class=12)

    def logits_for(code: str, name: str) -> list[float]:
        values = [-5.0] * len(IRMAS_CODES)
        values[IRMAS_CODES.index("flu" if code == "cel" else code)] = 5.0
        return values

    _write_teacher(folder, logits_for)
    results = {"plain": train(folder, root / "plain", **_DISTIL_KWARGS),
               "blend": train(folder, root / "blend", distil=0.9, **_DISTIL_KWARGS),
               "keep": train(folder, root / "keep", distil=0.9, distil_label="keep",
                             **_DISTIL_KWARGS)}
    rng = np.random.default_rng(5)
    cello = torch.tensor(_clip("cel", rng, 3.0).mean(axis=1)[::2].copy(), dtype=torch.float32)
    scores = {}
    for name, result in results.items():
        model = dreamsound.load_model("instrument", weights=result.weights_path, device="cpu")
        with torch.no_grad():
            scores[name] = model(cello).clip_scores  # [cel, flu, ...]
    return {"folder": folder, "results": results, "scores": scores}


def test_distillation_pulls_the_model_toward_the_teacher(cello_as_flute, tmp_path):
    # With distil 0.9 the model's cello windows are taught mostly "flute", so its flute score on
    # cellos ends far above a labels-only model's.
    scores = cello_as_flute["scores"]
    log = json.loads(cello_as_flute["results"]["blend"].log_path.read_text())
    assert log["settings"]["distil"] == 0.9 and log["settings"]["distil_label"] == "blend"
    assert scores["plain"].argmax() == 0  # cello
    assert scores["blend"][1] > scores["plain"][1] + 0.3  # the teacher's flute
    with pytest.raises(ValueError, match="distil"):
        train(cello_as_flute["folder"], tmp_path / "bad", distil=1.0, **_DISTIL_KWARGS)
    # A set without its teacher file: one clear error, and no output folder left behind.
    bare = make_set(tmp_path / "bare", per_class=2)
    with pytest.raises(DataError, match=r"teacher\.csv is missing"):
        train(bare, tmp_path / "never", distil=0.5, **_DISTIL_KWARGS)
    assert not (tmp_path / "never").exists()


def test_distil_targets_blend_or_keep_the_label():
    from dreamsound.train.data import distil_targets

    labels = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    teacher = torch.tensor([[0.2, 0.7, 0.1], [0.5, 0.25, 0.25]])
    torch.testing.assert_close(distil_targets(labels, teacher, 0.5),
                               torch.tensor([[0.6, 0.35, 0.05], [0.25, 0.625, 0.125]]))
    torch.testing.assert_close(distil_targets(labels, teacher, 0.5, "keep"),
                               torch.tensor([[1.0, 0.35, 0.05], [0.25, 1.0, 0.125]]))
    with pytest.raises(ValueError, match="blend, keep"):
        distil_targets(labels, teacher, 0.5, "mix")


def test_keep_distillation_teaches_the_teacher_and_keeps_the_label(cello_as_flute, tmp_path):
    # Blending 0.9 of the teacher in makes the model call cellos flutes; keeping the label makes
    # it hear flute in them *as well as* cello.
    scores = cello_as_flute["scores"]
    log = json.loads(cello_as_flute["results"]["keep"].log_path.read_text())
    assert log["settings"]["distil_label"] == "keep"
    assert scores["keep"][0] > 0.5 and scores["keep"][0] > scores["blend"][0] + 0.3  # cello
    assert scores["keep"][1] > 0.5  # and the teacher's flute
    with pytest.raises(ValueError, match="distil_label"):
        train(cello_as_flute["folder"], tmp_path / "never", distil=0.9, distil_label="mix",
              **_DISTIL_KWARGS)
    assert not (tmp_path / "never").exists()


def test_cli_refuses_an_unknown_distil_label(tmp_path):
    from typer.testing import CliRunner

    from dreamsound.cli import app

    result = CliRunner().invoke(app, ["train", str(tmp_path), "--out", str(tmp_path / "m"),
                                      "--distil-label", "mix"])
    assert result.exit_code == 2 and "blend, keep" in result.output
    assert not (tmp_path / "m").exists()


def test_adversarial_copies_stay_in_the_ball_and_raise_the_loss():
    from dreamsound.metrics import DB_PER_NEPER
    from dreamsound.models.instrument import new_model
    from dreamsound.train.adversarial import adversarial_copies

    torch.manual_seed(0)
    network = new_model(["cel", "flu", "gac"], architecture=TINY).network
    network.train()
    windows = torch.randn(6, 1, 43, 128)
    targets = torch.nn.functional.one_hot(torch.arange(6) % 3, 3).float()
    moved = adversarial_copies(network, windows, targets, 0.5)
    rmse_db = DB_PER_NEPER * (moved - windows).flatten(1).pow(2).mean(dim=1).sqrt()
    assert torch.all(rmse_db <= 0.5 + 1e-4) and torch.all(rmse_db > 0.25)
    assert rmse_db.max() > 0.499  # steps that go past the edge are pulled back onto it
    network.eval()
    with torch.no_grad():
        clean = torch.nn.functional.binary_cross_entropy_with_logits(network(windows)[0],
                                                                     targets)
        attacked = torch.nn.functional.binary_cross_entropy_with_logits(network(moved)[0],
                                                                        targets)
    assert attacked > clean
    network.train()
    adversarial_copies(network, windows, targets, 0.5)
    assert network.training  # the mode it was in
    assert all(p.grad is None for p in network.parameters())
    with pytest.raises(ValueError):
        adversarial_copies(network, windows, targets, 0.0)


def test_fine_tuning_starts_from_the_given_weights(tiny_set, tmp_path):
    first = train(tiny_set, tmp_path / "first", epochs=1, batch_size=32, architecture=TINY,
                  device="cpu")
    start = load_weights_file(first.weights_path)
    # lr 0: the weights stay the ones given (a new network would differ everywhere).
    tuned = train(tiny_set, tmp_path / "tuned", epochs=1, batch_size=32, lr=0.0, seed=5,
                  init=first.weights_path, adversarial_db=0.5, device="cpu")
    after = load_weights_file(tuned.weights_path)
    for name, value in start.network.state_dict().items():
        if "running" not in name and "num_batches" not in name:
            assert torch.equal(value, after.network.state_dict()[name]), name
    settings = after.config.extra["training"]
    assert settings["init"] == str(first.weights_path) and settings["adversarial_db"] == 0.5


def test_fine_tuning_refuses_other_classes_and_missing_weights(tiny_set, tmp_path):
    first = train(tiny_set, tmp_path / "first", epochs=1, batch_size=32, architecture=TINY,
                  device="cpu")
    two = make_set(tmp_path / "two", per_class=4, classes=("cel", "flu"))
    with pytest.raises(DataError, match="same classes"):
        train(two, tmp_path / "o1", epochs=1, init=first.weights_path)
    with pytest.raises(DataError, match="no weights to start from"):
        train(two, tmp_path / "o2", epochs=1, init=tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="not both"):
        train(two, tmp_path / "o3", epochs=1, init=first.weights_path, architecture=TINY)
    with pytest.raises(ValueError, match="adversarial_db"):
        train(two, tmp_path / "o4", epochs=1, adversarial_db=-1.0)
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 5))


def test_cli_train_refuses_missing_starting_weights(tiny_set, tmp_path):
    from typer.testing import CliRunner

    from dreamsound.cli import app

    result = CliRunner().invoke(app, ["train", str(tiny_set), "--out", str(tmp_path / "x"),
                                      "--init", str(tmp_path / "nope.safetensors"), "--quiet"])
    assert result.exit_code == 2
    assert "no weights to start from" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x").exists()
