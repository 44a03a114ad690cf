#!/usr/bin/env python
"""How different soundfonts sound: the same MIDI phrases through each, compared on a log-mel scale.

``soundfont_overlap.py`` finds the samples two soundfonts share byte for byte. A recording that
was resampled, trimmed or looped again no longer hashes the same yet sounds the same; this script
catches that case. It renders the same solo phrases (the renderer's generator, one seed and one
phrase plan for every soundfont) through each soundfont with ``fluidsynth``, computes each clip's
log-mel spectrogram (44.1 kHz, 2048-point STFT, hop 1024, 128 Slaney mel bands up to 11,025 Hz,
power in dB, floored 80 dB below the clip's peak), aligns two renders of one phrase by their median
difference (the fonts' levels differ), and prints, per class, the mean absolute difference in dB
averaged over the phrases. Byte-identical samples give ~1 dB or less (release tails and envelope
settings still differ); independent recordings of one instrument 5-10 dB.

Example (the model card's check that GeneralUser GS and A320U are not FluidR3_GM in disguise)::

    python -m scripts.data.soundfont_distance FluidR3_GM TimGM6mb sf_GMbank GeneralUser-v1.47 A320U
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import struct
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

if __package__ in (None, ""):  # run as a file, not with -m: make `scripts` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dreamsound.spectral import slaney_mel_matrix
from scripts.data import render_trainset as render
from scripts.data import soundfont_overlap

N_FFT, HOP, N_MELS, F_MAX = 2048, 1024, 128, 11_025.0
FLOOR_DB = 80.0
PHRASE_KEY = "same"  # one generator key for every font, so every font plays the same MIDI


def log_mel_db(path: Path, mel: torch.Tensor) -> torch.Tensor:
    """(mels, frames) power log-mel of a rendered clip in dB, floored FLOOR_DB below its peak."""
    audio, _ = sf.read(path, dtype="float32", always_2d=True)
    spectrum = torch.stft(torch.from_numpy(audio.mean(axis=1)), N_FFT, HOP,
                          window=torch.hann_window(N_FFT), return_complex=True)
    db = 10.0 * torch.log10(mel @ spectrum.abs().square() + 1e-12)
    return db.clamp(min=float(db.max()) - FLOOR_DB)


def render_fonts(fonts: Sequence[Path], classes: Sequence[str], per_class: int, seed: int,
                 out: Path) -> None:
    """The same ``per_class`` solo phrases per class, rendered through each font into
    ``out/<font stem>/<class>/``."""
    synth = shutil.which("fluidsynth")
    if synth is None:
        render.fail("the `fluidsynth` command is not on PATH (apt install fluidsynth)")
    plans = [render.plan_clip(seed, PHRASE_KEY, code, i, mix_share=0.0)
             for code in classes for i in range(per_class)]
    for font in fonts:
        folder = out / font.stem
        for start in range(0, len(plans), render.STEMS_PER_BATCH):
            render.render_batch(plans[start:start + render.STEMS_PER_BATCH], font, folder,
                                synth, gain=0.5)


def distance_table(fonts: Sequence[Path], classes: Sequence[str], per_class: int,
                   seed: int) -> dict[str, dict[str, float]]:
    """``{"A vs B": {class: mean |dB difference|}}`` for every pair of fonts."""
    # [mels, bins]: slaney_mel_matrix gives [bins, mels].
    mel = torch.from_numpy(slaney_mel_matrix(N_MELS, N_FFT, render.SAMPLE_RATE, 0.0, F_MAX)).T
    mel = mel.float()
    with tempfile.TemporaryDirectory(prefix="dreamsound-distance-") as tmp:
        out = Path(tmp)
        render_fonts(fonts, classes, per_class, seed, out)
        names = [font.stem for font in fonts]
        table: dict[str, dict[str, float]] = {f"{a} vs {b}": {}
                                              for a, b in itertools.combinations(names, 2)}
        for code in classes:
            clips = sorted(p.name for p in (out / names[0] / code).glob("*.wav"))
            spectra = {name: [log_mel_db(out / name / code / clip, mel) for clip in clips]
                       for name in names}
            for a, b in itertools.combinations(names, 2):
                gaps = []
                for x, y in zip(spectra[a], spectra[b]):
                    diff = x - y
                    gaps.append(float((diff - diff.median()).abs().mean()))
                table[f"{a} vs {b}"][code] = float(np.mean(gaps))
    return table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("soundfonts", nargs="+",
                        help="two or more soundfonts, by name (as render_trainset.py finds them) "
                        "or path")
    parser.add_argument("--classes", nargs="+", default=list(render.CLASS_CODES),
                        choices=render.CLASS_CODES)
    parser.add_argument("--per-class", type=int, default=12, help="phrases per class (default 12)")
    parser.add_argument("--seed", type=int, default=7, help="phrase seed (default 7)")
    parser.add_argument("--json", action="store_true", help="print the table as JSON")
    args = parser.parse_args(argv)
    if len(args.soundfonts) < 2:
        parser.error("give two or more soundfonts")
    fonts = [render.find_soundfont(name) for name in args.soundfonts]
    if any(font.suffix != ".sf2" for font in fonts):
        render.fail("only SoundFont 2 (.sf2) files can be compared")
    if len({font.stem for font in fonts}) < len(fonts):
        render.fail("two of the soundfonts have the same file name; rename one")
    for font in fonts:
        # fluidsynth renders silence from a file it cannot load, so read each one first.
        try:
            soundfont_overlap.preset_samples(font)
        except (OSError, ValueError, IndexError, struct.error) as exc:
            render.fail(f"cannot read {font}: {exc}")
    table = distance_table(fonts, args.classes, args.per_class, args.seed)
    if args.json:
        print(json.dumps(table, indent=1))
        return 0
    width = max(len(pair) for pair in table)
    print(f"mean |log-mel difference| in dB, {args.per_class} phrases per class")
    print("pair".ljust(width), *(f"{code:>5}" for code in args.classes), " mean")
    for pair, row in table.items():
        print(pair.ljust(width), *(f"{row[code]:5.1f}" for code in args.classes),
              f"{np.mean(list(row.values())):5.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
