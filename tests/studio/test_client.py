"""The studio end to end through its API, with gradio's own Python client (``gradio_client``):
a dream of examples/loop.wav toward violin on the debug model, its files and report, the session
gallery, a dream of the dream, the one-line errors, cancel, the queue, sonify and classify."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.studio.conftest import AUDIT_HOOK, LOOP, StudioServer, start_studio

gradio_client = pytest.importorskip("gradio_client", reason="the studio extra is not "
                                                            "installed: pip install '.[studio]'")
from gradio_client import Client, handle_file  # noqa: E402

pytestmark = pytest.mark.slow

#: Few steps and a short rendering keep each dream of the debug model at about a second.
FAST = {"steps": 3, "gl_iterations": 4, "fit_iterations": 0}
#: The first outputs of /dream, in order (the gallery columns follow).
DREAM_OUTPUTS = ("status", "original", "dream", "gradient", "figure", "report", "files",
                 "table")


def client(server: StudioServer, folder: Path) -> Client:
    return Client(server.url, verbose=False, download_files=str(folder),
                  analytics_enabled=False)


def dream(c: Client, **values) -> dict:
    out = c.predict(api_name="/dream", **{"model": "debug", **FAST, **values})
    return dict(zip(DREAM_OUTPUTS, out[:len(DREAM_OUTPUTS)]))


def test_dream_of_loop_toward_violin_end_to_end(studio_server: StudioServer, tmp_path: Path):
    c = client(studio_server, tmp_path)
    first = dream(c, sound=handle_file(str(LOOP)), target="violin")
    assert "done" in first["status"] and "violin" in first["status"]

    # Three players: the input at the model's rate, the dream, the gradient; same length, and
    # the dream is not the input.
    original, rate = sf.read(first["original"], dtype="float32")
    dreamed, rate_d = sf.read(first["dream"], dtype="float32")
    gradient, rate_g = sf.read(first["gradient"], dtype="float32")
    assert rate == rate_d == rate_g == 16000  # the debug model's rate
    assert original.shape == dreamed.shape == gradient.shape
    assert original.shape[0] == pytest.approx(sf.info(LOOP).duration * 16000, abs=2)
    assert np.max(np.abs(dreamed - original)) > 1e-3
    assert Path(first["figure"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The report on the page and the JSON download say the same thing.
    assert "confidence of **violin**" in first["report"]
    files = {Path(f).name: Path(f) for f in first["files"]}
    assert set(files) == {"001-loop.dream-violin.wav", "001-loop.dream-violin.gradient.wav",
                          "001-loop.dream-violin.original.wav", "001-loop.dream-violin.png",
                          "001-loop.dream-violin.json"}
    report = json.loads(files["001-loop.dream-violin.json"].read_text())
    assert report["model"] == "debug" and report["target"] == "violin"
    assert report["steps"] == 3 and report["rendered_from"] == "file"
    assert report["settings"]["fit_iterations"] == 0 and report["settings"]["gl_iterations"] == 4
    assert f"{report['confidence_rendered']:.3f}" in first["report"]
    assert 0.0 <= report["confidence_before"] <= 1.0
    assert first["table"]["data"][0][:4] == [1, "loop", "violin", "debug"]

    # Dream again from the result: the gallery of this session keeps both, numbered.
    second = dream(c, sound=handle_file(first["dream"]), target="flute", domain="waveform")
    assert [row[0] for row in second["table"]["data"]] == [1, 2]
    assert Path(second["dream"]).name == "002-loop.dream-violin.dream-flute-waveform-additive.wav"
    assert second["table"]["data"][1][2:5] == ["flute", "debug", "waveform"]


def test_judges_listen_to_the_written_dream(studio_server: StudioServer, tmp_path: Path):
    out = dream(client(studio_server, tmp_path), sound=handle_file(str(LOOP)), target="violin",
                judges=["instrument"])
    assert "| judge instrument: violin |" in out["report"]
    report = json.loads(next(Path(f) for f in out["files"] if f.endswith(".json")).read_text())
    (verdict,) = report["judges"]
    assert verdict["model"] == "instrument" and verdict["target"] == "violin"
    assert f"{verdict['confidence_after']:.3f}" in out["report"]


def test_generated_start_and_layer_objective(studio_server: StudioServer, tmp_path: Path):
    out = dream(client(studio_server, tmp_path), start="sine:440:1s", layer="conv2",
                channel="3")
    assert "layer energy" in out["report"]
    assert sf.info(out["dream"]).duration == pytest.approx(1.0, abs=1e-3)
    assert Path(out["dream"]).name == "001-sine-440-1s.dream-layer-conv2-c3.wav"


@pytest.mark.parametrize(("values", "message"), [
    ({"target": "kazoo"}, "debug has no class 'kazoo'"),
    ({"target": "violin", "until": "often"}, "--until must be a number, got 'often'"),
    ({"target": "violin", "domain": "spectrogram", "rule": "filter"},
     "--rule and --flip belong to the waveform domain"),
    ({"target": "violin", "sound": None}, "no sound: upload or record one"),
])
def test_bad_input_is_one_line_error(studio_server: StudioServer, tmp_path: Path, values,
                                     message):
    c = client(studio_server, tmp_path)
    values = {"sound": handle_file(str(LOOP)), **values}
    with pytest.raises(Exception) as caught:
        dream(c, **values)
    text = str(caught.value)
    assert message in text
    assert "Traceback" not in text and "\n" not in text.strip()


def test_non_audio_upload_is_the_library_error(studio_server: StudioServer, tmp_path: Path):
    fake = tmp_path / "notes.wav"
    fake.write_text("these are words, not samples\n")
    with pytest.raises(Exception, match="holds text, not sound"):
        dream(client(studio_server, tmp_path / "out"), sound=handle_file(str(fake)),
              target="violin")


def test_cancel_stops_the_dream_and_frees_the_model(studio_server: StudioServer,
                                                   tmp_path: Path):
    c = client(studio_server, tmp_path)
    job = c.submit(api_name="/dream", sound=handle_file(str(LOOP)), model="debug",
                   target="violin", steps=100000)
    deadline = time.monotonic() + 60
    while not any("step" in str(out[0]) for out in job.outputs()):
        assert time.monotonic() < deadline, "no progress event reached the client"
        time.sleep(0.1)
    live = next(str(o[0]) for o in job.outputs() if "step" in str(o[0]))
    assert "<progress" in live and "confidence" in live and "rmse_db" in live
    assert "cancelling" in c.predict(api_name="/cancel")
    deadline = time.monotonic() + 30
    while not job.done():
        assert time.monotonic() < deadline, "the dream did not stop after cancel"
        time.sleep(0.1)
    assert "cancelled after step" in str(job.outputs()[-1][0])
    assert "nothing to cancel" in c.predict(api_name="/cancel")
    # The worker let go of the model: the next dream runs at once.
    started = time.monotonic()
    out = dream(c, sound=handle_file(str(LOOP)), target="violin")
    assert "done" in out["status"]
    assert time.monotonic() - started < 30


def test_two_sessions_are_queued_not_crashed(studio_server: StudioServer, tmp_path: Path):
    results: dict[int, dict] = {}

    def run(index: int) -> None:
        results[index] = dream(client(studio_server, tmp_path / str(index)),
                               sound=handle_file(str(LOOP)), target="violin")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(results) == [0, 1]
    for out in results.values():
        assert "done" in out["status"]
        # Separate sessions, separate galleries: each holds its own dream only.
        assert [row[0] for row in out["table"]["data"]] == [1]


def test_sonify_and_classify(studio_server: StudioServer, tmp_path: Path):
    c = client(studio_server, tmp_path)
    status, audio, report = c.predict(api_name="/sonify", sound=handle_file(str(LOOP)),
                                      model="debug", target="violin", steps=2)
    assert "done" in status and report["steps"] == 2 and report["target"] == "violin"
    assert sf.info(audio).duration == pytest.approx(2 * sf.info(LOOP).duration, rel=0.05)
    label = c.predict(api_name="/classify", sound=handle_file(str(LOOP)), model="debug", top=3)
    names = [item["label"] for item in label["confidences"]]
    assert len(names) == 3 and label["label"] == names[0]
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, dtype=np.float32), 16000)
    with pytest.raises(Exception, match="silent"):
        c.predict(api_name="/classify", sound=handle_file(str(silent)), model="debug")


def test_every_knob_is_a_keyword_of_the_api(studio_server: StudioServer, tmp_path: Path):
    from dreamsound.config import DreamConfig

    api = client(studio_server, tmp_path).view_api(return_format="dict", print_info=False)
    params = {p["parameter_name"]: p for p in api["named_endpoints"]["/dream"]["parameters"]}
    for knob in DreamConfig.knobs():
        assert params[knob.name]["parameter_has_default"], knob.name
    assert params["steps"]["parameter_default"] == DreamConfig().steps
    assert {"sound", "start", "model", "target", "layer", "channel", "judges"} <= set(params)


def test_model_change_fills_the_targets(studio_server: StudioServer, tmp_path: Path):
    targets, layers, *_ = client(studio_server, tmp_path).predict("debug", "violin", None,
                                                                 api_name="/model")
    assert "violin" in [c[0] for c in targets["choices"]] and targets["value"] == "violin"
    assert [c[0] for c in layers["choices"]] == ["", "conv1", "conv2", "logits"]


def test_a_model_that_cannot_load_says_why(studio_server: StudioServer, tmp_path: Path):
    c = client(studio_server, tmp_path)
    targets, layers, *_ = c.predict("yamnet", "violin", None, api_name="/model")
    assert targets["choices"] == [] and targets["value"] is None
    assert [choice[0] for choice in layers["choices"]] == [""]
    with pytest.raises(Exception, match=r"weights file not found: .*no-yamnet.h5") as caught:
        dream(c, sound=handle_file(str(LOOP)), model="yamnet", target="violin")
    assert "\n" not in str(caught.value).strip()


def test_nothing_reaches_the_network(studio_server: StudioServer):
    # From start-up through every call above, the server tried no other machine.
    assert studio_server.network_attempts() == []


def test_the_network_watch_sees_an_attempt():
    # The watch itself works: a lookup of a non-local name is reported (and fails offline).
    code = AUDIT_HOOK + "import socket\ntry:\n    socket.getaddrinfo('example.invalid', 80)\n" \
        "except OSError:\n    pass\n"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert "NETWORK lookup example.invalid" in run.stderr


def test_stop_removes_the_output_folder(tmp_path: Path):
    # A service manager's SIGTERM stops the studio cleanly; its temporary outputs go with it.
    server = start_studio(tmp_path / "server.log",
                          env={"GRADIO_TEMP_DIR": str(tmp_path / "gradio-cache")})
    dream(client(server, tmp_path), sound=handle_file(str(LOOP)), target="violin")
    (line,) = [x for x in server.log_text().splitlines() if "Outputs:" in x]
    folder = Path(line.split("Outputs: ")[1].split(" (removed on exit)")[0])
    assert list(folder.glob("*/001-loop.dream-violin.wav"))
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=60) == 0
    assert not folder.exists()
