"""The command line: help, version, classify/classes/models on the offline debug model, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from dreamsound.cli import app

runner = CliRunner()


@pytest.fixture
def tone_wav(tmp_path):
    """A 2 s, 16 kHz chord as a file."""
    t = np.arange(32000) / 16000
    x = 0.2 * (np.sin(2 * np.pi * 440 * t) + np.sin(2 * np.pi * 660 * t))
    path = tmp_path / "tone.wav"
    sf.write(path, x.astype(np.float32), 16000)
    return path


def test_cli_module_does_not_import_torch():
    # `dreamsound --help` must answer instantly: the CLI module may not import torch.
    code = "import sys, dreamsound.cli; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_help_and_version():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "classify" in result.output
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and "dreamsound" in result.output


def test_python_dash_m_runs():
    out = subprocess.run([sys.executable, "-m", "dreamsound", "--version"], capture_output=True,
                         text=True)
    assert out.returncode == 0 and out.stdout.startswith("dreamsound ")


def test_classify_json_shape(tone_wav):
    result = runner.invoke(app, ["classify", str(tone_wav), "--model", "debug", "--json",
                                 "--frames"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["model"] == "debug"
    assert len(doc["class_names"]) == len(doc["scores"]) == 11
    assert all(0.0 <= s <= 1.0 for s in doc["scores"])
    # 2 s at 16 kHz with 0.48 s patches of 0.48 s hop (debug: 48 frames, hop 24) -> several.
    assert len(doc["frames"]) > 1
    assert doc["frames"][1]["start_s"] == pytest.approx(0.24)
    assert np.allclose(np.mean([f["scores"] for f in doc["frames"]], axis=0), doc["scores"],
                       atol=1e-6)


def test_classify_table(tone_wav):
    result = runner.invoke(app, ["classify", str(tone_wav), "-m", "debug", "--top", "3"])
    assert result.exit_code == 0, result.output
    assert "score" in result.output


def test_classes_search():
    result = runner.invoke(app, ["classes", "--model", "debug", "--search", "guitar", "--json"])
    assert result.exit_code == 0, result.output
    names = [row["name"] for row in json.loads(result.stdout)]
    assert names == ["acoustic guitar", "electric guitar"]


@pytest.mark.parametrize("argv, needle", [
    (["classify", "missing.wav", "-m", "nope"], "unknown model 'nope'"),
    (["classes", "--model", "yamnett"], "Did you mean: yamnet"),
])
def test_errors_are_one_line_exit_2(argv, needle):
    result = runner.invoke(app, argv)
    assert result.exit_code == 2
    assert needle in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_models_list_json():
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert {"debug", "yamnet", "instrument"} <= set(rows)
    assert rows["debug"]["present"] is True


@pytest.mark.parametrize("clip, expected", [
    ("cat.wav", {"Animal", "Domestic animals, pets", "Cat", "Meow", "Purr"}),
    ("whistle.wav", {"Whistle"}),
])
def test_classify_yamnet_real_sounds(shared, yamnet_h5, clip, expected):
    result = runner.invoke(app, ["classify", str(shared / "audio" / clip), "--model", "yamnet",
                                 "--weights", str(yamnet_h5), "--top", "3", "--json"])
    assert result.exit_code == 0, result.output
    top3 = {row["name"] for row in json.loads(result.stdout)["top"]}
    assert top3 & expected, top3
