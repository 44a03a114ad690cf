"""Readers for the IRMAS instrument data set (Bosch, Janer, Fuhrmann & Herrera, ISMIR 2012).

Two layouts exist and both are read here:

* **training** (``IRMAS-TrainingData/``): one folder per class code (``cel``, ``cla``, ...), 3 s
  excerpts named like ``008__[cel][nod][cla]0058__1.wav``: an optional numeric prefix, then tags
  for the predominant instrument, drums (``[dru]`` present / ``[nod]`` absent, missing on many
  files) and genre (``cou_fol``, ``cla``, ``pop_roc``, ``lat_sou``, ``jaz_blu``), the song number
  and the excerpt number after ``__``. The *folder* is the label; the file-name tags are metadata.
* **testing** (``IRMAS-TestingData-Part{1,2,3}/``): 5-20 s excerpts with free-form names, each
  ``name.wav`` beside a ``name.txt`` holding one or more class codes, one per line (trailing
  spaces and tabs occur in the real files and are tolerated).

The data set cannot be redistributed (CC BY-NC-SA); these readers only index folders a user has.
dreamsound's own rendered training set (``scripts/data/render_trainset.py``) uses the training
layout.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dreamsound.errors import DataError, did_you_mean

log = logging.getLogger(__name__)

#: IRMAS class codes (folder names), in the output order of every IRMAS model in dreamsound.
IRMAS_CODES = ("cel", "cla", "flu", "gac", "gel", "org", "pia", "sax", "tru", "vio", "voi")
#: Display names, index-aligned with :data:`IRMAS_CODES`.
IRMAS_NAMES = ("cello", "clarinet", "flute", "acoustic guitar", "electric guitar", "organ",
               "piano", "saxophone", "trumpet", "violin", "voice")
#: Genre tags of the training file names.
IRMAS_GENRES = ("cou_fol", "cla", "pop_roc", "lat_sou", "jaz_blu")

_TAG = re.compile(r"\[([^\[\]]*)\]")
# After the last tag: the song number, then "__" and the excerpt number ("0058__1").
_TAIL = re.compile(r"^\s*(?P<song>\d+)?\s*(?:__\s*(?P<excerpt>\d+))?")
_AUDIO_SUFFIXES = (".wav",)

Layout = Literal["training", "testing"]


@dataclass(frozen=True)
class TrainingExcerpt:
    """One file of the training layout.

    Attributes
    ----------
    path : Path
        The wav file.
    label : str
        Class code of its folder (the ground truth).
    drums : bool or None
        ``[dru]`` -> True, ``[nod]`` -> False, no tag -> None.
    genre : str or None
        Genre tag (``cla``, ``pop_roc``, ...), when the name has one.
    song : str or None
        Song number from the name (``"0058"``), when there is one.
    excerpt : str or None
        Excerpt number after ``__``, when there is one.
    group : str
        Files that come from the same recording share a group (label, prefix and song number),
        so a validation split can keep excerpts of one song on one side.
    """

    path: Path
    label: str
    drums: bool | None
    genre: str | None
    song: str | None
    excerpt: str | None
    group: str


@dataclass(frozen=True)
class TestingExcerpt:
    """One file of the testing layout: a wav and its labels (class codes, file order)."""

    path: Path
    labels: tuple[str, ...]


@dataclass(frozen=True)
class NameTags:
    """What a training file name says (every field optional; real names vary)."""

    prefix: str | None
    instrument: str | None
    drums: bool | None
    genre: str | None
    song: str | None
    excerpt: str | None


def parse_training_name(name: str) -> NameTags:
    """Parse an IRMAS training file name.

    Handles ``008__[cel][nod][cla]0058__1.wav``, ``[vio][cla]2135__1.wav`` (no prefix, no drums
    tag) and names with extra text; unknown tags are ignored. Never raises.

    Examples
    --------
    >>> parse_training_name("008__[cel][nod][cla]0058__1.wav").song
    '0058'
    """
    stem = Path(name).stem
    tags = [t.strip().lower() for t in _TAG.findall(stem)]
    instrument = next((t for t in tags if t in IRMAS_CODES), None)
    drums = True if "dru" in tags else False if "nod" in tags else None
    # "cla" is both clarinet and classical: the first class-code tag is the instrument, a later
    # one is the genre.
    rest = list(tags)
    if instrument is not None:
        rest.remove(instrument)
    genre = next((t for t in rest if t in IRMAS_GENRES), None)
    first = stem.find("[")
    prefix = stem[:first].strip().rstrip("_").strip() if first > 0 else ""
    last = stem.rfind("]")
    tail = _TAIL.match(stem[last + 1:] if last >= 0 else stem)
    song = tail.group("song") if tail else None
    excerpt = tail.group("excerpt") if tail else None
    return NameTags(prefix or None, instrument, drums, genre, song, excerpt)


def _visible(path: Path) -> bool:
    # Skip macOS resource forks ("._x.wav"), .DS_Store, __MACOSX and other hidden entries.
    return not path.name.startswith((".", "__MACOSX"))


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and _visible(p) and p.suffix.lower() in _AUDIO_SUFFIXES)


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and _visible(p))


def _check_folder(folder: str | Path) -> Path:
    path = Path(folder).expanduser()
    if not path.exists():
        raise DataError(f"data folder not found: {path}")
    if not path.is_dir():
        raise DataError(f"{path} is a file; give the folder that holds the class folders "
                        f"({', '.join(IRMAS_CODES)})")
    if not any(_visible(p) for p in path.iterdir()):
        raise DataError(f"data folder {path} is empty")
    return path


def _class_folders(folder: Path) -> list[Path]:
    return [p for p in _subfolders(folder) if p.name.lower() in IRMAS_CODES]


def _training_root(folder: Path) -> Path | None:
    """The folder holding the class folders: ``folder`` itself or one level down (a user may
    pass the folder the zip was extracted into)."""
    if _class_folders(folder):
        return folder
    below = [p for p in _subfolders(folder) if _class_folders(p)]
    return below[0] if len(below) == 1 else None


def _testing_folders(folder: Path) -> list[Path]:
    """Folders holding ``.wav`` + ``.txt`` pairs: ``folder`` and/or its direct subfolders
    (``IRMAS-TestingData-Part1..3``)."""
    found = []
    for candidate in [folder, *_subfolders(folder)]:
        wavs = _audio_files(candidate)
        if wavs and any(w.with_suffix(".txt").is_file() for w in wavs):
            found.append(candidate)
    return found


def detect_layout(folder: str | Path) -> Layout:
    """``"training"`` (class folders) or ``"testing"`` (wav + txt pairs) for an IRMAS folder.

    Raises
    ------
    DataError
        The folder is missing, empty, or has neither layout.
    """
    path = _check_folder(folder)
    if _training_root(path) is not None:
        return "training"
    if _testing_folders(path):
        return "testing"
    raise DataError(_layout_problem(path))


def _layout_problem(path: Path) -> str:
    subs = _subfolders(path)
    if not subs and not _audio_files(path):
        return (f"{path} has no class folders and no .wav files; expected IRMAS class folders "
                f"({', '.join(IRMAS_CODES)}) holding .wav files")
    if not subs:
        return (f"{path} has .wav files but no class folders ({', '.join(IRMAS_CODES)}) and no "
                ".txt label files beside them; put each class's files in a folder named by "
                "its code")
    names = ", ".join(p.name for p in subs[:6]) + (", ..." if len(subs) > 6 else "")
    return (f"{path} has no IRMAS class folders (found: {names}); expected folders named "
            f"{', '.join(IRMAS_CODES)}")


def read_training_set(folder: str | Path) -> list[TrainingExcerpt]:
    """Index an IRMAS-training-layout folder (the real one or a rendered one).

    Parameters
    ----------
    folder : path
        ``IRMAS-TrainingData`` (or the folder that contains it), with class folders ``cel`` ...
        ``voi`` holding ``.wav`` files. Classes may be missing (a subset is fine).

    Returns
    -------
    list of TrainingExcerpt
        Sorted by class, then file name.

    Raises
    ------
    DataError
        Missing or empty folder, no class folders, a folder of wavs named like no class, or
        no wav file at all.
    """
    path = _check_folder(folder)
    root = _training_root(path)
    if root is None:
        raise DataError(_layout_problem(path))
    # A folder of wavs whose name is no class code is a mistake worth stopping for (a typo such
    # as "vln" would otherwise silently drop a class).
    for sub in _subfolders(root):
        if sub.name.lower() not in IRMAS_CODES and _audio_files(sub):
            raise DataError(f"unknown class folder {sub.name!r} in {root} (class folders are "
                            f"named {', '.join(IRMAS_CODES)})." + did_you_mean(sub.name,
                                                                               IRMAS_CODES))
    excerpts = []
    for class_dir in _class_folders(root):
        label = class_dir.name.lower()
        files = _audio_files(class_dir)
        if not files:
            log.warning("class folder %s holds no .wav files", class_dir)
        for file in files:
            tags = parse_training_name(file.name)
            if tags.instrument is not None and tags.instrument != label:
                log.warning("%s is in folder %r but its name says %r; using the folder",
                            file, label, tags.instrument)
            group = (f"{label}/{tags.prefix or ''}/{tags.song}" if tags.song is not None
                     else f"{label}/{file.stem}")
            excerpts.append(TrainingExcerpt(path=file, label=label, drums=tags.drums,
                                            genre=tags.genre, song=tags.song,
                                            excerpt=tags.excerpt, group=group))
    if not excerpts:
        raise DataError(f"no .wav files in the class folders of {root}")
    return excerpts


def read_labels_file(path: str | Path) -> tuple[str, ...]:
    """Class codes in an IRMAS testing ``.txt`` file: one per line, whitespace tolerated.

    Raises
    ------
    DataError
        Unreadable file, no label in it, or a code that is no IRMAS class.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DataError(f"cannot read label file {path}: {exc.strerror}") from None
    labels: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        code = line.strip().lower()
        if not code:
            continue
        if code not in IRMAS_CODES:
            raise DataError(f"unknown label {code!r} in {path} line {number} (IRMAS codes: "
                            f"{', '.join(IRMAS_CODES)})." + did_you_mean(code, IRMAS_CODES))
        if code not in labels:
            labels.append(code)
    if not labels:
        raise DataError(f"label file {path} has no label")
    return tuple(labels)


def read_testing_set(folder: str | Path) -> list[TestingExcerpt]:
    """Index an IRMAS-testing-layout folder (one part, or the folder holding Part1..3).

    Raises
    ------
    DataError
        Missing or empty folder, no ``.wav``/``.txt`` pairs, a wav without its label file, or an
        unknown label code.
    """
    path = _check_folder(folder)
    folders = _testing_folders(path)
    if not folders:
        raise DataError(f"{path} has no IRMAS testing files (name.wav beside name.txt)"
                        if _training_root(path) is None else
                        f"{path} is in the IRMAS training layout (class folders), not testing")
    excerpts = []
    for sub in folders:
        for wav in _audio_files(sub):
            txt = wav.with_suffix(".txt")
            if not txt.is_file():
                raise DataError(f"{wav} has no label file {txt.name} beside it")
            excerpts.append(TestingExcerpt(path=wav, labels=read_labels_file(txt)))
    return excerpts
