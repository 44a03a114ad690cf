"""Long sounds (dreamsound.streaming): a file longer than a segment is dreamed, sonified and
classified in cross-faded segments, written block by block, with one progress bar; a file that
fits in one segment gives exactly the one-shot result. Debug model, short files, small segments.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from dreamsound import api, segments, streaming
from dreamsound.api import Dreamer
from dreamsound.config import DreamConfig
from dreamsound.engine.result import DreamReport
from dreamsound.errors import AudioError, OutputError, TargetError
from dreamsound.inputs import FileBlocks
from dreamsound.models.registry import load_model
from scripts.bench.bench_long import join_frames, seam_check
from tests.test_segments import texture

#: Small segments so that a few seconds make several (debug model: 0.24 s patch hop).
SEGMENT = {"segment_s": 3.0, "overlap_s": 0.5}
SETTINGS = {"steps": 3, "step_size": 1.0, "gl_iterations": 4, "fit_iterations": 0, "seed": 3}
CONFIG = DreamConfig(**SETTINGS)  # the default style, robust
#: The exact style (sonifications turn an exact domain's gradient into sound).
EXACT = DreamConfig(style="exact", **SETTINGS)


@pytest.fixture(scope="module", params=["robust", "exact"])
def dreamer(request) -> Dreamer:
    """The debug model dreaming in each style (the default, robust, and exact)."""
    config = CONFIG if request.param == "robust" else EXACT
    return Dreamer(load_model("debug", device="cpu"), config)


@pytest.fixture(scope="module")
def sonifier() -> Dreamer:
    return Dreamer(load_model("debug", device="cpu"), EXACT)


@pytest.fixture(scope="module")
def long_dream(tmp_path_factory, dreamer):
    """One streamed dream of a 9 s stereo 44.1 kHz file (4 segments), with everything the
    tests below look at: the report, the progress events, every block written and every
    segment the one-shot path dreamed."""
    folder = tmp_path_factory.mktemp("long")
    source = folder / "take.wav"
    sf.write(source, texture(9.0, 44100), 44100, subtype="PCM_16")
    writes: dict[str, list[int]] = {}
    dreamed: list[int] = []
    joined: dict[int, list[np.ndarray]] = {}
    events = []
    original_writer, original_dream = streaming.open_writer, api.Dreamer.dream
    original_add = segments.Crossfade.add

    def keeping_add(self, segment, *, last):
        joined.setdefault(id(self), []).append(np.array(segment))
        original_add(self, segment, last=last)

    def counting_writer(path, *args, **kwargs):
        sizes = writes.setdefault(path.name, [])
        with original_writer(path, *args, **kwargs) as write:
            yield lambda block: (sizes.append(len(block)), write(block))

    def counting_dream(self, audio, **kwargs):
        dreamed.append(len(audio))
        return original_dream(self, audio, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        import contextlib

        patch.setattr(streaming, "open_writer", contextlib.contextmanager(counting_writer))
        patch.setattr(api.Dreamer, "dream", counting_dream)
        patch.setattr(segments.Crossfade, "add", keeping_add)
        report = streaming.dream_file(dreamer, source, target="violin", stem=folder / "out",
                                      progress=events.append, **SEGMENT)
    return {"source": source, "folder": folder, "report": report, "writes": writes,
            "dreamed": dreamed, "events": events,
            "segments": next(iter(joined.values()))}  # the dream's (the first cross-fade)


def test_long_dream_writes_block_by_block(long_dream, dreamer):
    report, folder = long_dream["report"], long_dream["folder"]
    with FileBlocks(long_dream["source"], 16000) as blocks:
        n = blocks.n_samples
    plan = segments.SegmentPlan.for_model(n, dreamer.model, **SEGMENT)
    assert plan.count == 4 == report["segments"]["count"]
    # The engine only ever saw one segment, and the writers one segment's samples at a time.
    assert long_dream["dreamed"] == [end - start for start, end in map(plan.bounds,
                                                                         range(plan.count))]
    for name in ("out.wav", "out.gradient.wav"):
        sizes = long_dream["writes"][name]
        assert len(sizes) == plan.count and max(sizes) <= plan.length and sum(sizes) == n
    audio, rate = sf.read(report["outputs"]["audio"], dtype="float32")
    assert rate == 16000 and audio.shape == (n,) and np.isfinite(audio).all()
    assert np.abs(audio).max() <= 10 ** (-1 / 20) + 1e-4  # a blend of limited segments
    assert sorted(p.name for p in folder.iterdir()) == [
        "out.gradient.wav", "out.json", "out.wav", "take.wav"]  # no temporary file left


def test_long_report_has_the_documented_keys_and_aggregates(long_dream):
    report = long_dream["report"]
    documented = set(DreamReport.__dataclass_fields__) - {"judges", "ensemble"}
    assert set(report) == documented | {"segments"}
    assert json.loads(Path(report["outputs"]["report"]).read_text()) == report
    items = report["segments"]["items"]
    assert [i["index"] for i in items] == [0, 1, 2, 3]
    assert report["steps"] == sum(i["steps"] for i in items) == 12
    assert report["target"] == "violin" and report["rendered_from"] == "file"
    assert report["segments"]["confidence_after_min"] == min(i["confidence_after"]
                                                             for i in items)
    assert min(i["confidence_after"] for i in items) <= report["confidence_after"] \
        <= max(i["confidence_after"] for i in items)
    assert report["confidence_after"] > report["confidence_before"]  # it dreamed
    assert report["rmse_db_rendered"] > 0 and report["rmse_db"] > 0
    assert report["duration_s"] == pytest.approx(9.0)


def _seams(model, audio: np.ndarray, plan: segments.SegmentPlan) -> dict:
    cfg = model.front_end.config
    with torch.no_grad():
        mel = model.front_end.mel_db(model.log_mel(torch.from_numpy(audio))).numpy()
    return seam_check(mel, join_frames(plan, cfg.hop_length, cfg.win_length))


def test_no_seam_at_the_joins(long_dream, dreamer):
    audio, _ = sf.read(long_dream["report"]["outputs"]["audio"], dtype="float32")
    plan = segments.SegmentPlan.for_model(audio.shape[0], dreamer.model, **SEGMENT)
    check = _seams(dreamer.model, audio, plan)
    assert check["joins"] == 3 and check["ok"], check
    # The check can fail: the same segments cut hard in the middle of each overlap are found.
    pieces: list[np.ndarray] = []
    hard = segments.Crossfade(pieces.append, plan.overlap)
    hard.fade_in = (np.arange(plan.overlap) >= plan.overlap // 2).astype(np.float64)
    for index, segment in enumerate(long_dream["segments"]):
        hard.add(segment, last=index == plan.count - 1)
    found = _seams(dreamer.model, np.concatenate(pieces), plan)
    assert not found["ok"] and found["join_flux_median_db"] > 2 * check["join_flux_median_db"]


def test_progress_is_one_bar_over_every_segment_once(long_dream):
    events = long_dream["events"]
    order = [e.segment for e in events]
    assert [s for i, s in enumerate(order) if i == 0 or s != order[i - 1]] == [0, 1, 2, 3]
    assert {e.segments for e in events} == {4} and {e.total for e in events} == {12}
    steps = [e.step for e in events]
    assert steps == sorted(steps) and steps[-1] == 12


def test_same_seed_same_bytes(tmp_path, dreamer):
    source = tmp_path / "take.wav"
    sf.write(source, texture(4.5, 16000, channels=1), 16000)
    config = CONFIG.replace(steps=1)
    first, second = (streaming.dream_file(Dreamer(dreamer.model, config), source,
                                          stem=tmp_path / name, **SEGMENT)
                     for name in ("a", "b"))
    assert first["segments"]["count"] == 2
    for key in ("audio", "gradient"):
        assert Path(first["outputs"][key]).read_bytes() == \
            Path(second["outputs"][key]).read_bytes()


def test_a_file_that_fits_is_the_one_shot_result(tmp_path, dreamer):
    source = tmp_path / "short.wav"
    sf.write(source, texture(2.5, 44100), 44100)
    streamed = streaming.dream_file(dreamer, source, target="violin", stem=tmp_path / "s",
                                    **SEGMENT)
    result = dreamer.dream(source, target="violin")
    one_shot = dreamer.save(result, tmp_path / "o").report.to_json()
    assert "segments" not in streamed
    for key in ("audio", "gradient"):
        assert Path(streamed["outputs"][key]).read_bytes() == \
            Path(one_shot["outputs"][key]).read_bytes()
    ignore = {"seconds", "seconds_per_step", "outputs"}
    assert {k: v for k, v in streamed.items() if k not in ignore} == \
        {k: v for k, v in one_shot.items() if k not in ignore}

def test_a_file_that_fits_is_sonified_as_one_shot(tmp_path, sonifier):
    source = tmp_path / "short.wav"
    sf.write(source, texture(2.5, 44100), 44100)
    sonified = streaming.sonify_file(sonifier, source, steps=2, stem=tmp_path / "ss",
                                     **SEGMENT)
    expected = sonifier.sonify(source, steps=2).audio
    written, _ = sf.read(sonified["outputs"]["audio"], dtype="float32")
    np.testing.assert_allclose(written, expected, atol=1 / 2**15)  # PCM_16 of the same sound


def test_errors_leave_no_partial_file(tmp_path, dreamer, monkeypatch):
    source = tmp_path / "take.wav"
    sf.write(source, texture(4.5, 16000, channels=1), 16000)
    before = source.read_bytes()
    folder = tmp_path / "out"
    calls = []

    def failing(self, audio, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("the second segment fails")
        return original(self, audio, **kwargs)

    original = api.Dreamer.dream
    monkeypatch.setattr(api.Dreamer, "dream", failing)
    with pytest.raises(RuntimeError, match="second segment"):
        streaming.dream_file(dreamer, source, stem=folder / "x", **SEGMENT)
    assert list(folder.iterdir()) == []  # the first segment's blocks went with the temp files
    monkeypatch.undo()
    with pytest.raises(OutputError, match="input"):  # the output would be the input
        streaming.dream_file(dreamer, source, stem=tmp_path / "take", **SEGMENT)
    (tmp_path / "a-file").write_text("")
    with pytest.raises(OutputError):  # its folder cannot be made
        streaming.dream_file(dreamer, source, stem=tmp_path / "a-file" / "x", **SEGMENT)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(before[:len(before) * 2 // 3])
    with pytest.raises(AudioError, match="truncated"):
        streaming.dream_file(dreamer, cut, stem=tmp_path / "c", **SEGMENT)
    with pytest.raises(AudioError, match="limit"):
        streaming.dream_file(dreamer, source, stem=tmp_path / "m", max_seconds=4.0, **SEGMENT)
    assert source.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "cut.wav", "out",
                                                          "take.wav"]


def test_long_sonify_streams_every_step(tmp_path, sonifier):
    source = tmp_path / "take.wav"
    sf.write(source, texture(4.5, 16000, channels=1), 16000)
    report = streaming.sonify_file(sonifier, source, target="violin", steps=2,
                                   stem=tmp_path / "s", **SEGMENT)
    audio, rate = sf.read(report["outputs"]["audio"], dtype="float32")
    assert rate == 16000 and audio.shape == (2 * 72000,) and report["steps"] == 2
    assert report["segments"]["count"] == 2 and report["duration_s"] == pytest.approx(9.0)
    assert np.abs(audio).max() <= 10 ** (-1 / 20) + 1e-4 and np.abs(audio).max() > 0.1
    assert abs(audio[0]) < 1e-3 and abs(audio[72000]) < 1e-3  # each step fades in


def test_cli_streams_dream_and_classify(tmp_path):
    from dreamsound.cli import app
    from dreamsound.outputs import slug

    source = tmp_path / "take.wav"
    sf.write(source, texture(12.0, 16000, channels=1), 16000)
    runner = CliRunner()
    result = runner.invoke(app, ["classify", str(source), "-m", "debug", "--frames", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert len(doc["frames"]) == 49  # every patch of the 12 s file
    result = runner.invoke(app, ["dream", str(source), "-m", "debug", "-n", "1",
                                 "--gl-iterations", "2", "--fit-iterations", "0", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["segments"]["count"] == 2  # 10 s segments: the default
    assert doc["outputs"]["audio"] == str(tmp_path / f"take.dream-{slug(doc['target'])}.wav")
    result = runner.invoke(app, ["dream", str(source), "-m", "debug", "--max-seconds", "5"])
    assert result.exit_code == 2 and "limit" in result.output


def test_long_dreams_in_every_objective_and_domain(tmp_path, dreamer):
    """A layer, the robust style over a silent stretch (passed through: nothing to shape), the
    waveform target rule (its second sound looped under each segment), and a judge outside the
    dream hearing the whole written file."""
    sound = texture(12.0, 16000, channels=1)[:, 0]
    sound[48000:128000] = 0.0  # 3-8 s: the segment at 4.8-7.7 s is digital silence
    source = tmp_path / "take.wav"
    sf.write(source, sound, 16000, subtype="FLOAT")
    sf.write(tmp_path / "second.wav", texture(1.0, 16000, channels=1, seed=4), 16000)
    model = dreamer.model
    layer = streaming.dream_file(Dreamer(model, CONFIG.replace(steps=1)), source,
                                 layer=next(iter(model.named_layers())), stem=tmp_path / "l",
                                 **SEGMENT)
    assert layer["objective"] == "layer" and layer["confidence_after"] is None
    assert layer["objective_after"] > layer["objective_before"]
    robust = streaming.dream_file(Dreamer(model, DreamConfig(style="robust", steps=1,
                                                             changes=1)),
                                  source, target="violin", stem=tmp_path / "r", **SEGMENT)
    items = robust["segments"]["items"]
    assert robust["domain"] == "envelope" and [i["steps"] for i in items] == [1, 1, 0, 1, 1]
    audio, _ = sf.read(robust["outputs"]["audio"], dtype="float32")
    assert not audio[80000:120000].any()  # the silence stayed silence
    rule = streaming.dream_file(Dreamer(model, DreamConfig(domain="waveform", rule="target",
                                                           steps=1)),
                                source, target="violin", target_sound=tmp_path / "second.wav",
                                stem=tmp_path / "t", **SEGMENT)
    assert rule["rule"] == "target" and rule["segments"]["count"] == 5
    judged = streaming.dream_file(Dreamer(model, CONFIG.replace(steps=1),
                                          judges=["instrument"]),
                                  source, target="violin", stem=tmp_path / "j", **SEGMENT)
    (verdict,) = judged["judges"]
    assert verdict["model"] == "instrument" and verdict["concept"] == "violin"
    assert 0 <= verdict["confidence_after"] <= 1 and isinstance(verdict["moved"], bool)
    with pytest.raises(TargetError, match="judges"):
        streaming.dream_file(Dreamer(model, CONFIG, judges=["instrument"]), source,
                             layer=next(iter(model.named_layers())), stem=tmp_path / "x",
                             **SEGMENT)
    assert not list(tmp_path.glob("x*"))


def test_long_dream_on_the_default_model(tmp_path):
    """The instrument model (the default) caches folded weights on its first call: the
    whole-file classification before the segments must leave them usable for gradients."""
    source = tmp_path / "take.wav"
    sf.write(source, texture(5.0, 22050, channels=1), 22050)
    dreamer = Dreamer("instrument", CONFIG.replace(steps=1, gl_iterations=1), device="cpu")
    report = streaming.dream_file(dreamer, source, target="violin", stem=tmp_path / "i",
                                  **SEGMENT)
    assert report["model"] == "instrument" and report["segments"]["count"] == 3
    assert report["steps"] == 3 and report["confidence_after"] > report["confidence_before"]
