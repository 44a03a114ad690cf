"""Bad input through the real CLI: one clear line on stderr, exit code 2, no traceback."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from dreamsound.cli import app

runner = CliRunner()


def _write(path, data, rate=16000, subtype="FLOAT"):
    sf.write(path, np.asarray(data, dtype=np.float32), rate, subtype=subtype)
    return path


def _bad_inputs(tmp_path):
    t = np.arange(16000) / 16000
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n" * 50)
    truncated = _write(tmp_path / "cut.wav", tone, subtype="PCM_16")
    truncated.write_bytes(truncated.read_bytes()[:20000])
    nan = tone.copy()
    nan[100] = np.nan
    return {
        "empty": (empty, "empty"),
        "text": (text, "notes.wav"),
        "truncated": (truncated, "cut.wav"),
        "silent": (_write(tmp_path / "zeros.wav", np.zeros(16000)), "silent"),
        "nan": (_write(tmp_path / "nan.wav", nan), "NaN"),
        "missing": (tmp_path / "nowhere.wav", "nowhere.wav"),
        "long": (_write(tmp_path / "long.wav", np.tile(tone, 3)), "--max-seconds"),
    }


@pytest.mark.parametrize("case", ["empty", "text", "truncated", "silent", "nan", "missing",
                                  "long"])
def test_classify_bad_audio(tmp_path, case):
    path, needle = _bad_inputs(tmp_path)[case]
    result = runner.invoke(app, ["classify", str(path), "-m", "debug", "--max-seconds", "2"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert needle.lower() in lines[0].lower()


@pytest.mark.parametrize("channels, rate", [(8, 16000), (1, 8000), (2, 96000)])
def test_odd_channels_and_rates_are_handled(tmp_path, channels, rate):
    # Many channels are mixed down and odd rates resampled: these are valid sounds.
    t = np.arange(rate) / rate
    data = np.stack([0.2 * np.sin(2 * np.pi * 330 * (c + 1) * t) for c in range(channels)], 1)
    path = _write(tmp_path / f"odd_{channels}_{rate}.wav", data, rate)
    result = runner.invoke(app, ["classify", str(path), "-m", "debug", "--json"])
    assert result.exit_code == 0, result.output


def test_unknown_target_has_suggestions():
    result = runner.invoke(app, ["classes", "-m", "debug", "--search", "kazoo"])
    assert result.exit_code == 2 and "kazoo" in result.output


@pytest.mark.parametrize("models, needle", [
    (["debug:abc"], "cannot read the weight 'abc'"),
    (["debug:0"], "must be a number > 0"),
    (["debug", "debug"], "in the ensemble twice"),
])
def test_bad_ensembles_are_one_line(tmp_path, models, needle):
    flags = [arg for name in models for arg in ("-m", name)]
    result = runner.invoke(app, ["dream", "noise:1s", *flags, "-t", "violin", "-n", "1",
                                 "--out", f"{tmp_path}/x/"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.output
    assert not (tmp_path / "x").exists()


def test_names_with_colons_stay_text(tmp_path):
    # rich would turn ":fire:" into an emoji; a path in an error must read as typed.
    path = tmp_path / "take:fire:1.wav"
    result = runner.invoke(app, ["classify", str(path), "-m", "debug"])
    assert result.exit_code == 2 and "take:fire:1.wav" in result.output, result.output


@pytest.mark.parametrize("command", ["classify", "dream"])
def test_text_named_mp3_is_one_line_on_stderr_too(tmp_path, command):
    # libsndfile's MP3 decoder writes its own notes to the process's stderr, past Python: only
    # a real process shows whether a text file named .mp3 reaches it.
    import subprocess
    import sys

    path = tmp_path / "take.mp3"
    path.write_text("not a recording, just notes\n")
    extra = ["-t", "violin", "-n", "1"] if command == "dream" else []
    out = subprocess.run([sys.executable, "-m", "dreamsound", command, str(path), "-m", "debug",
                          *extra], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 2
    lines = (out.stdout + out.stderr).strip().splitlines()
    assert lines == [f"error: {path}: holds text, not sound (it begins 'not a recording, just "
                     "notes')"], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["take.mp3"]
