"""scripts/data/real_devset.py: a dev set built offline from tiny fake packages (npm tarball and
Debian package) in the cache: layout, determinism, the sha256 refusal, fetching through a stand-in
registry client."""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import subprocess
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dreamsound.data.irmas import parse_training_name, read_training_set
from scripts.data import real_devset as real
from tests.qt_resource_writer import write_qt_resources

RATE = 44100
REPO = Path(__file__).resolve().parents[1]


def _tone(freq: float, seconds: float, *, decay: float = 1.5, harmonics: int = 6) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    wave = sum(np.sin(2 * np.pi * freq * k * t) / k for k in range(1, harmonics + 1))
    return (0.3 * wave * np.exp(-t * decay)).astype(np.float32)


def _noise_hit(seconds: float, decay: float, seed: int) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    noise = np.random.default_rng(seed).standard_normal(len(t))
    return (0.5 * noise * np.exp(-t * decay)).astype(np.float32)


def _encoded(audio: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio, RATE, format=fmt, subtype="VORBIS" if fmt == "OGG" else "PCM_16")
    return buffer.getvalue()


def _tar(files: dict[str, bytes], mode: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _ar(members: dict[str, bytes]) -> bytes:
    out = b"!<arch>\n"
    for name, data in members.items():
        header = (f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n").encode()
        out += header + data + (b"\n" if len(data) % 2 else b"")
    return out


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def fake_sources(tmp_path: Path) -> tuple[list[real.Source], Path]:
    """Two fake packages in a cache folder, and the Source entries (with their sha256)."""
    cache = tmp_path / "cache"
    cache.mkdir()
    npm_files = {
        "package/README.md": b"fake piano and organ notes",
        "package/audio/C4.wav": _encoded(_tone(261.63, 2.0), "WAV"),
        "package/audio/E4.wav": _encoded(_tone(329.63, 2.0), "WAV"),
        "package/audio/G4.wav": _encoded(_tone(392.0, 2.0), "WAV"),
        "package/audio/drone.wav": _encoded(_tone(130.8, 5.0, decay=0.01), "WAV"),
    }
    (cache / "fake-keys-1.0.0.tgz").write_bytes(_tar(npm_files, "w:gz"))
    data = _tar({
        "./usr/share/fake/bowed.flac": _encoded(_tone(440.0, 1.5, decay=0.2, harmonics=9),
                                                "FLAC"),
        "./usr/share/fake/kick.flac": _encoded(_noise_hit(0.4, 20.0, 1), "FLAC"),
        "./usr/share/fake/snare.flac": _encoded(_noise_hit(0.3, 25.0, 2), "FLAC"),
        "./usr/share/fake/hat.flac": _encoded(_noise_hit(0.1, 60.0, 3), "FLAC"),
        "./usr/share/fake/loop.flac": _encoded(_noise_hit(1.2, 3.0, 4), "FLAC"),
    }, "w:xz")
    deb = _ar({"debian-binary": b"2.0\n", "control.tar.xz": _tar({}, "w:xz"),
               "data.tar.xz": data})
    (cache / "fake-sounds_0.1-1_all.deb").write_bytes(deb)
    keys = real.Source(
        "fake-keys", "npm", "fake-keys", "1.0.0", "fake-keys-1.0.0.tgz",
        _sha(cache / "fake-keys-1.0.0.tgz"), "test data",
        (real.Group("fake-piano", "pia", "notes",
                    ("package/audio/C4.wav", "package/audio/E4.wav", "package/audio/G4.wav"),
                    pitches=(60, 64, 67)),
         real.Group("fake-organ", "org", "excerpt", ("package/audio/drone.wav",))))
    sounds = real.Source(
        "fake-sounds", "deb", "fake-sounds", "0.1-1", "fake-sounds_0.1-1_all.deb",
        _sha(cache / "fake-sounds_0.1-1_all.deb"), "test data",
        (real.Group("fake-violin", "vio", "notes", ("usr/share/fake/bowed.flac",),
                    sustained=True),
         real.Group("fake-kit", real.DRUMS, "hits",
                    ("usr/share/fake/kick.flac", "usr/share/fake/snare.flac",
                     "usr/share/fake/hat.flac"), roles=("kick", "snare", "hat")),
         real.Group("fake-loop", real.DRUMS, "loop", ("usr/share/fake/loop.flac",))))
    return [keys, sounds], cache


def _no_network(*args, **kwargs):
    raise AssertionError(f"a registry client was run: {args}")


def _build(sources, cache, out, **kwargs):
    fetcher = functools.partial(real.fetch, run=_no_network)
    return real.build(out, cache, sources=sources, fetcher=fetcher, progress=False, **kwargs)


def test_layout_manifest_and_evaluation_reader(fake_sources, tmp_path):
    sources, cache = fake_sources
    out = tmp_path / "dev"
    rows = _build(sources, cache, out, per_class=6, seed=3, mix_share=0.5)
    assert len(rows) == 18  # pia, org, vio; no clip of the accompaniment-only drums
    with open(out / "manifest.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == real.MANIFEST_FIELDS
        manifest = {r["file"]: r for r in reader}
    excerpts = read_training_set(out)
    assert sorted(f"{e.label}/{e.path.name}" for e in excerpts) == sorted(manifest)
    assert {e.label for e in excerpts} == {"pia", "org", "vio"}
    assert {r["kind"] for r in manifest.values()} == {"solo", "mix"}
    for excerpt in excerpts:
        row = manifest[f"{excerpt.label}/{excerpt.path.name}"]
        info = sf.info(excerpt.path)
        assert (info.samplerate, info.channels, info.subtype, info.frames) == \
            (44100, 2, "PCM_16", 3 * 44100)
        tags = parse_training_name(excerpt.path.name)
        assert tags.instrument == row["class"] == excerpt.label
        assert tags.drums == (row["drums"] == "1")
        assert excerpt.path.name.startswith(f"real-{row['kind']}-")
        assert row["source"] in {"fake-keys@1.0.0", "fake-sounds@0.1-1"}
        assert int(row["program"]) in range(5)
        if row["kind"] == "mix":
            assert 2.0 <= float(row["snr_db"]) <= 10.0 and row["accompaniment"]
        else:
            assert row["snr_db"] == "" and row["accompaniment"] == ""
        audio, _ = sf.read(excerpt.path)
        assert 0.4 < np.max(np.abs(audio)) < 0.9  # peak-normalised to -6..-1 dBFS
    # What the evaluation reads: scores solo and mix apart, one figure per recording group.
    from dreamsound.models.instrument import load_weights_file
    from scripts.experiments.cross_soundfont import evaluate_folder
    model = load_weights_file(REPO / "models" / "instrument_cnn" / "model.safetensors")
    result = evaluate_folder(model, out)
    assert result["n_solo"] + result["n_mix"] == 18
    assert set(result["per_class_top1"]) == {"pia", "org", "vio"}


def test_the_same_options_give_the_same_bytes(fake_sources, tmp_path):
    sources, cache = fake_sources
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    _build(sources, cache, a, per_class=4, seed=1)
    _build(sources, cache, b, per_class=4, seed=1)
    _build(sources, cache, c, per_class=4, seed=2)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    wavs = [f for f in files if f.suffix == ".wav"]
    assert any(not (c / f).is_file() or (a / f).read_bytes() != (c / f).read_bytes()
               for f in wavs)


def test_a_rebuild_replaces_the_previous_clips(fake_sources, tmp_path):
    sources, cache = fake_sources
    out = tmp_path / "dev"
    _build(sources, cache, out, per_class=5, seed=0)
    _build(sources, cache, out, per_class=2, seed=9)
    assert len(read_training_set(out)) == 6  # none of the first build's clips is left


def test_a_tampered_package_is_refused(fake_sources, tmp_path, monkeypatch, capsys):
    sources, cache = fake_sources
    deb = cache / sources[1].artefact
    data = bytearray(deb.read_bytes())
    data[-10] ^= 0xFF
    deb.write_bytes(bytes(data))
    with pytest.raises(real.ChecksumError, match="refusing"):
        _build(sources, cache, tmp_path / "dev", per_class=2)
    assert not (tmp_path / "dev").exists()
    assert deb.read_bytes() == bytes(data)  # left in place for inspection
    # The command line: one line on stderr, exit code 2.
    monkeypatch.setattr(real, "DEFAULT_SOURCES", tuple(sources))
    code = real.main(["--out", str(tmp_path / "dev"), "--cache", str(cache), "--per-class", "2"])
    assert code == 2
    assert "sha256" in capsys.readouterr().err


def test_a_missing_package_is_fetched_with_the_registry_client(fake_sources, tmp_path):
    sources, cache = fake_sources
    source = sources[0]
    stash = (cache / source.artefact).read_bytes()
    (cache / source.artefact).unlink()
    calls = []

    def npm(command, cwd, **kwargs):  # stands in for `npm pack`: writes the tarball in cwd
        calls.append((command, cwd))
        (Path(cwd) / source.artefact).write_bytes(stash)
        return subprocess.CompletedProcess(command, 0, "", "")

    assert real.fetch(source, cache, run=npm) == cache / source.artefact
    assert calls == [(["npm", "pack", "--silent", "fake-keys@1.0.0"], cache)]
    assert real.fetch(source, cache, run=_no_network) == cache / source.artefact  # cached now

    def failing(command, cwd, **kwargs):
        return subprocess.CompletedProcess(command, 1, "", "E404 Not Found")

    (cache / source.artefact).unlink()
    with pytest.raises(real.SourceError, match="E404"):
        real.fetch(source, cache, run=failing)
    deb = replace(sources[1], artefact="absent.deb")
    assert real.fetch_command(deb, cache) == ["apt-get", "download", "fake-sounds=0.1-1"]
    wheel = replace(sources[1], registry="pypi")
    assert real.fetch_command(wheel, cache)[-1] == "fake-sounds==0.1-1"


def test_the_pinned_sources_avoid_the_reserved_test_recordings():
    """The tonejs-instruments samples and FluidR3_GM renders are held-out test material."""
    for source in real.SOURCES:
        assert "tonejs-instrument" not in source.package and "nbrosowsky" not in source.licence
        assert len(source.sha256) == 64
        for group in source.groups:
            assert group.code in (*real.CLASS_CODES, real.DRUMS)
            assert not any("fluid" in m.lower() for m in group.members)
    # The development set has no real clarinet or saxophone (said so, not faked); GCompris's
    # recordings, one per class, make a set of their own, built only when asked for.
    covered = {g.code for s in real.DEFAULT_SOURCES for g in s.groups}
    assert {"cla", "sax"}.isdisjoint(covered)
    assert [s.key for s in real.SOURCES if s not in real.DEFAULT_SOURCES] == ["gcompris"]
    gcompris = {g.code for s in real.SOURCES if s.key == "gcompris" for g in s.groups}
    assert gcompris == set(real.CLASS_CODES) - {"voi"} | {real.DRUMS}


def test_recordings_inside_a_qt_resource_of_a_package(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    folder = "/gcompris/src/activities/instruments/resource/"
    rcc = write_qt_resources({
        f"{folder}clarinet.ogg": _encoded(_tone(293.7, 4.0, decay=0.1, harmonics=9), "OGG"),
        f"{folder}saxophone.ogg": _encoded(_tone(233.1, 4.0, decay=0.1), "OGG"),
        f"{folder}drum_kit.ogg": _encoded(_noise_hit(1.0, 3.0, 5), "OGG"),
    }, compress=(f"{folder}saxophone.ogg",))
    data = _tar({"./usr/share/gcompris-qt/rcc/instruments.rcc": rcc}, "w:xz")
    deb = cache / "fake-gcompris_1_all.deb"
    deb.write_bytes(_ar({"debian-binary": b"2.0\n", "control.tar.xz": _tar({}, "w:xz"),
                         "data.tar.xz": data}))
    inside = "usr/share/gcompris-qt/rcc/instruments.rcc" + real.RESOURCE_SEPARATOR + folder
    source = real.Source(
        "fake-gcompris", "deb", "fake-gcompris", "1", deb.name, _sha(deb), "test data",
        (real.Group("fake-clarinet", "cla", "excerpt", (f"{inside}clarinet.ogg",)),
         real.Group("fake-saxophone", "sax", "excerpt", (f"{inside}saxophone.ogg",)),
         real.Group("fake-drums", real.DRUMS, "loop", (f"{inside}drum_kit.ogg",))))
    rows = _build([source], cache, tmp_path / "dev", per_class=4, mix_share=0.5)
    assert sorted({r["class"] for r in rows}) == ["cla", "sax"]
    excerpts = read_training_set(tmp_path / "dev")
    assert sorted(e.label for e in excerpts) == ["cla"] * 4 + ["sax"] * 4
    package = real.Package(deb)
    with pytest.raises(real.SourceError, match=r"has no /nowhere\.ogg"):
        package.read(f"usr/share/gcompris-qt/rcc/instruments.rcc{real.RESOURCE_SEPARATOR}"
                     "/nowhere.ogg")
