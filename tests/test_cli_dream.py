"""`dreamsound dream` and `dreamsound sonify` end to end (debug model offline; YAMNet slow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from dreamsound.cli import app

REPO = Path(__file__).resolve().parents[1]
LOOP = REPO / "examples" / "loop.wav"
runner = CliRunner()

REQUIRED_KEYS = {"model", "target", "domain", "steps", "seconds", "confidence_before",
                 "confidence_after", "confidence_rendered", "rmse_db", "mse_db2", "outputs"}


@pytest.fixture
def loop_copy(tmp_path) -> Path:
    """The example loop, copied so outputs land in a temporary folder beside it."""
    path = tmp_path / "loop.wav"
    path.write_bytes(LOOP.read_bytes())
    return path


def run(*argv: str):
    result = runner.invoke(app, list(argv))
    assert result.exit_code == 0, result.output
    return result


def test_example_loop_is_in_the_repository():
    info = sf.info(LOOP)
    assert info.channels == 1 and 6 <= info.duration <= 12


def test_dream_writes_audio_report_plot(loop_copy):
    before = loop_copy.read_bytes()
    result = run("dream", str(loop_copy), "-m", "debug", "--target", "violin", "--steps", "5",
                 "--plot", "--json")
    doc = json.loads(result.stdout)
    assert set(doc) >= REQUIRED_KEYS
    folder = loop_copy.parent
    outputs = doc["outputs"]
    assert outputs["audio"] == str(folder / "loop.dream-violin.wav")
    assert outputs["report"] == str(folder / "loop.dream-violin.json")
    assert outputs["plot"] == str(folder / "loop.dream-violin.png")
    assert outputs["gradient"] == str(folder / "loop.dream-violin.gradient.wav")
    for path in outputs.values():
        assert Path(path).is_file()
    assert json.loads(Path(outputs["report"]).read_text()) == doc
    assert doc["rendered_from"] == "file" and doc["steps"] == 5
    audio, rate = sf.read(outputs["audio"])
    assert rate == 16000 and np.isfinite(audio).all()
    assert np.abs(audio).max() <= 10 ** (-1 / 20) + 1e-4
    assert loop_copy.read_bytes() == before


def test_dream_table_output(loop_copy):
    result = run("dream", str(loop_copy), "-m", "debug", "-t", "flute", "-n", "2", "-q")
    for text in ("confidence before", "confidence rendered", "rmse_db", "loop.dream-flute.wav"):
        assert text in result.output


def test_batch_one_model_load(loop_copy, tmp_path):
    from dreamsound.models.registry import ModelSpec, get_spec, register

    loads = []
    debug = get_spec("debug")
    register(ModelSpec(name="debug-counted", summary="debug, counting its loads",
                       factory=lambda weights, device: loads.append(1)
                       or debug.factory(weights, device)))
    out = tmp_path / "dreams"
    result = run("dream", str(loop_copy), "noise:1s", "-m", "debug-counted", "-t", "violin",
                 "-t", "cello", "-n", "2", "--out", f"{out}/", "--json")
    docs = json.loads(result.stdout)
    assert len(docs) == 4 and len(loads) == 1
    names = sorted(p.name for p in out.glob("*.wav") if ".gradient" not in p.name)
    assert names == ["loop.dream-cello.wav", "loop.dream-violin.wav",
                     "noise-1s.dream-cello.wav", "noise-1s.dream-violin.wav"]


def test_out_stem_and_snapshots(loop_copy, tmp_path):
    stem = tmp_path / "mine" / "take1"
    doc = json.loads(run("dream", str(loop_copy), "-m", "debug", "-t", "violin", "-n", "4",
                         "--save-every", "2", "--out", str(stem), "--json").stdout)
    assert doc["outputs"]["audio"] == str(stem) + ".wav"
    assert doc["outputs"]["snapshots"] == [str(stem) + ".step0002.wav",
                                           str(stem) + ".step0004.wav"]


def test_same_seed_same_bytes(loop_copy, tmp_path):
    args = ["dream", str(loop_copy), "-m", "debug", "-t", "violin", "-n", "3", "--jitter", "0.1",
            "--seed", "5", "-q"]
    run(*args, "--out", str(tmp_path / "a"))
    run(*args, "--out", str(tmp_path / "b"))
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    assert (tmp_path / "a.gradient.wav").read_bytes() == (tmp_path / "b.gradient.wav").read_bytes()


def test_waveform_domain_and_target_sound(loop_copy, tmp_path):
    other = tmp_path / "other.wav"
    t = np.arange(16000) / 16000
    sf.write(other, (0.3 * np.sin(2 * np.pi * 880 * t)).astype(np.float32), 16000)
    doc = json.loads(run("dream", str(loop_copy), "-m", "debug", "-t", "violin", "-n", "2",
                         "--domain", "waveform", "--rule", "target", "--target-sound",
                         str(other), "--flip", "--json").stdout)
    assert doc["domain"] == "waveform" and doc["rule"] == "target" and doc["flip"] is True
    assert doc["outputs"]["audio"].endswith("loop.dream-violin-waveform-target-flip.wav")


@pytest.mark.parametrize("argv, needle", [
    (["-t", "violinn"], "Did you mean"),
    (["--rule", "filter"], "waveform domain"),
    (["-t", "violin", "--layer", "conv1"], "not both"),
    (["--layer", "nope"], "no layer 'nope'"),
])
def test_dream_errors_are_one_line(loop_copy, argv, needle):
    result = runner.invoke(app, ["dream", str(loop_copy), "-m", "debug", "-n", "1", *argv])
    assert result.exit_code == 2, result.output
    assert needle in result.output and "Traceback" not in result.output


def test_silence_waveform_is_a_clear_error_and_spectrogram_is_defined(tmp_path):
    result = runner.invoke(app, ["dream", "silence:1s", "-m", "debug", "-t", "violin", "-n", "1",
                                 "--domain", "waveform", "--out", str(tmp_path / "w")])
    assert result.exit_code == 2 and "silent" in result.output
    assert not list(tmp_path.iterdir())
    result = runner.invoke(app, ["dream", "silence:1s", "-m", "debug", "-t", "violin", "-n", "1",
                                 "--out", str(tmp_path / "r")])  # the default, robust style
    assert result.exit_code == 2 and "--domain spectrogram" in result.output
    assert not list(tmp_path.iterdir())
    doc = json.loads(run("dream", "silence:1s", "-m", "debug", "-t", "violin", "-n", "3",
                         "--domain", "spectrogram", "--out", str(tmp_path / "s"),
                         "--json").stdout)
    audio, _ = sf.read(doc["outputs"]["audio"])
    assert np.isfinite(audio).all()


def test_several_outputs_need_a_folder(loop_copy, tmp_path):
    result = runner.invoke(app, ["dream", str(loop_copy), "-m", "debug", "-t", "violin", "-t",
                                 "cello", "-n", "1", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "must be a folder" in result.output


def test_sonify_command(tmp_path):
    short = tmp_path / "short.wav"
    loop, rate = sf.read(LOOP, dtype="float32")
    sf.write(short, loop[:2 * rate], rate)
    doc = json.loads(run("sonify", str(short), "-m", "debug", "-t", "violin", "--steps",
                         "3", "--json").stdout)
    path = Path(doc["outputs"]["audio"])
    assert path.name == "short.sonify-violin.wav"
    audio, rate = sf.read(path)
    assert rate == 16000 and audio.shape[0] == 3 * 2 * 16000
    assert np.abs(audio).max() == pytest.approx(10 ** (-1 / 20), abs=1e-3)
    layer = json.loads(run("sonify", str(short), "-m", "debug", "--layer", "conv2",
                           "--json").stdout)
    assert Path(layer["outputs"]["audio"]).name == "short.sonify-layer-conv2.wav"


def test_every_knob_is_an_option_with_the_librarys_default():
    import inspect

    from dreamsound.cli.dream import dream as command
    from dreamsound.config import DreamConfig

    options = inspect.signature(command).parameters
    for field in DreamConfig.knobs():
        if field.name == "limit":  # offered as --no-limit (off by default)
            assert options["limit"].default is False
            continue
        assert options[field.name].default == field.default, field.name
    result = run("dream", "--help")
    for field in DreamConfig.knobs():
        assert field.metadata["flag"] in result.output, field.name


def test_knob_flags_become_the_config(loop_copy, tmp_path):
    doc = json.loads(run("dream", str(loop_copy), "-m", "debug", "-t", "violin", "-n", "1",
                         "--no-limit", "--save-every", "1", "--gl-iterations", "3",
                         "--out", f"{tmp_path}/", "--json").stdout)
    settings = doc["settings"]
    assert (settings["limit"], settings["snapshot_every"], settings["gl_iterations"],
            settings["steps"]) == (False, 1, 3, 1)


def test_dream_help_lists_metric_definitions():
    result = run("dream", "--help")
    assert "mse_db2" in result.output and "rmse_db" in result.output


# -- real models ----------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", ["loop", "cat"])
def test_yamnet_until_reaches_target(name, yamnet_h5, shared, tmp_path):
    source = LOOP if name == "loop" else shared / "audio" / "cat.wav"
    result = run("dream", str(source), "--model", "yamnet", "--weights", str(yamnet_h5),
                 "--target", "violin", "--until", "0.9", "--plot", "--out",
                 str(tmp_path / name), "--json", "--style", "exact")
    doc = json.loads(result.stdout)
    assert doc["target"] == "Violin, fiddle"
    assert doc["confidence_before"] < 0.1
    assert doc["stopped"] == "until" and doc["confidence_after"] >= 0.9
    assert doc["confidence_rendered"] is not None and doc["rendered_from"] == "file"
    # What a listener gets is still clearly violin, and the dream stayed close.
    assert doc["confidence_rendered"] > 0.5
    assert doc["rmse_db"] < 4.0
    for path in doc["outputs"].values():
        assert Path(path).is_file()


@pytest.mark.slow
def test_default_model_dreams_the_example(loop_copy):
    from dreamsound.errors import DreamsoundError
    from dreamsound.models.registry import load_model

    try:
        load_model("instrument", device="cpu")
    except DreamsoundError as exc:
        pytest.skip(f"the shipped instrument model is not available here: {exc}")
    doc = json.loads(run("dream", str(loop_copy), "--target", "violin", "--plot",
                         "--json").stdout)
    assert doc["model"] == "instrument" and doc["settings"]["style"] == "robust"
    assert doc["confidence_rendered"] > 0.5 > doc["confidence_before"]
    assert doc["rmse_db"] <= 6.0 + 0.05  # the robust style's bound, on the written audio
    for key in ("audio", "report", "plot"):
        assert Path(doc["outputs"][key]).is_file()


def test_example_plugin_registers_through_the_entry_point(tmp_path, monkeypatch, loop_copy):
    # Install the example plug-in the way pip would expose it: its module on sys.path and a
    # .dist-info folder whose entry_points.txt names the ModelSpec (no network, no build).
    dist = tmp_path / "site" / "dreamsound_band_energy-0.1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: dreamsound-band-energy\n"
                                   "Version: 0.1.0\n")
    (dist / "entry_points.txt").write_text(
        '[dreamsound.models]\nband-energy = dreamsound_band_energy:SPEC\n')
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.syspath_prepend(str(REPO / "examples" / "plugin"))
    listed = json.loads(run("models", "--json").stdout)
    assert "band-energy" in [row["name"] for row in listed]
    doc = json.loads(run("dream", str(loop_copy), "--model", "band-energy", "--target", "high",
                         "-n", "20", "--json").stdout)
    assert doc["model"] == "band-energy" and doc["target"] == "high"
    assert doc["confidence_after"] > doc["confidence_before"] + 0.2


@pytest.mark.slow
def test_examples_readme_python_runs_as_written(tmp_path, monkeypatch):
    import re
    import shutil

    text = (REPO / "examples" / "README.md").read_text()
    code = re.search(r"## From Python\s+```python\n(.*?)```", text, re.S).group(1)
    (tmp_path / "examples").mkdir()
    shutil.copy(REPO / "examples" / "loop.wav", tmp_path / "examples" / "loop.wav")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "examples/README.md", "exec"), namespace)
    assert namespace["result"].report["confidence_rendered"] >= 0.9
    assert namespace["saved"].report["rendered_from"] == "file"
    assert (tmp_path / "out" / "loop.dream-violin.png").is_file()
    assert namespace["sequence"].audio.size == 8 * namespace["result"].audio.size
