#!/usr/bin/env python
"""Cross-soundfont folds with a variant of the network or augmentation that did not ship.

The model card's "What else was tried" table reports these variants; this script reproduces them
without keeping their code in the package -- except mixup, which must change the training
targets, and the vibrato and compressor, which act in the middle of :func:`dreamsound.train.augment`
(before its rooms, gains and noise): those are off-by-default ``Augmentation`` options, open to
anyone training on their own data. It swaps one piece, then runs
``scripts/experiments/cross_soundfont.py`` with the remaining arguments::

    python -m scripts.experiments.fold_variants --pool mean -- --threads 1 folds \\
        --train-root work_data/render/train_fp --test-root work_data/render/test \\
        --folds fluidr3gm --epochs 20 --patience 4 --out work_data/cross/v13_mean
    python -m scripts.experiments.fold_variants --freq-mixstyle 0.7 --mixstyle-alpha 0.3 -- \\
        --threads 1 folds ... --out work_data/cross/v12_fms

``--then dreamsound`` runs ``dreamsound`` with the remaining arguments instead (a whole model,
not a fold, with the augmentation variants)::

    python -m scripts.experiments.fold_variants --vibrato 0.5 --then dreamsound -- \\
        --threads 1 train SETS... --out work_data/models/vib

Variants:

* ``--pool mean``: global average pooling of the last block instead of Han et al.'s global max.
* ``--freq-mixstyle P``: Freq-MixStyle (MixStyle, Zhou et al. 2021, per frequency band, as in
  device-robust scene classifiers; Morocutti et al. 2023, arXiv:2305.07499), after the usual
  augmentation and with probability P per batch. Each window's per-band mean and standard
  deviation over time (its long-term spectrum) are swapped, in part, for another window's: the
  band-normalised window is re-scaled with ``lam * own + (1 - lam) * other`` statistics, ``lam ~
  Beta(alpha, alpha)``. It was built to make scene classifiers ignore the recording device.
* ``--channels C1 C2 C3 C4``: conv block widths (the shipped network is 16-32-64-128, half of
  Han et al.'s 32-64-128-256).
* ``--mixup P --mixup-alpha A``: mixup (Zhang et al. 2018) of windows and targets, with
  probability P per window (``dreamsound.train.Augmentation.mixup_prob``, off in the shipped
  recipe).
* ``--vibrato P``, ``--compress P``: a vibrato (the spectrum swings along the mel axis) or a
  compressor on the frame level, each with probability P per window
  (``Augmentation.vibrato_prob`` and ``compress_prob``, off in the shipped recipe).
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import torch

import dreamsound.train as training
from dreamsound.models.instrument import Architecture, InstrumentNetwork
from dreamsound.train import loop as training_loop

if __package__ in (None, ""):  # run as a file, not with -m: make `scripts` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.experiments import cross_soundfont


def global_mean_pool(x: torch.Tensor) -> torch.Tensor:
    """Global average instead of global max pooling of the last block, ``[P, C, T, F]`` ->
    ``[P, C]``."""
    return x.mean(dim=(-2, -1))


def with_freq_mixstyle(augment, probability: float, alpha: float):
    """Wrap ``dreamsound.train.augment`` so that Freq-MixStyle follows it."""
    beta = torch.distributions.Beta(alpha, alpha)

    def augment_then_mix(log_mel, labels, config, offset, generator, **kwargs):
        out = augment(log_mel, labels, config, offset, generator, **kwargs)
        if float(torch.rand(1, generator=generator)) >= probability:
            return out
        mean = out.mean(dim=1, keepdim=True)                    # [B, 1, F] over time
        std = (out.var(dim=1, keepdim=True) + 1e-4).sqrt()
        partner = torch.randperm(out.shape[0], generator=generator)
        lam = beta.sample((out.shape[0], 1, 1))
        return ((out - mean) / std * (lam * std + (1 - lam) * std[partner])
                + lam * mean + (1 - lam) * mean[partner])

    return augment_then_mix


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ours, rest = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv \
        else (argv, [])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool", choices=("max", "mean"), default="max")
    parser.add_argument("--freq-mixstyle", type=float, default=0.0, metavar="P")
    parser.add_argument("--mixstyle-alpha", type=float, default=0.3)
    parser.add_argument("--mixup", type=float, default=0.0, metavar="P",
                        help="mixup probability per window (Augmentation.mixup_prob)")
    parser.add_argument("--mixup-alpha", type=float, default=0.3)
    parser.add_argument("--vibrato", type=float, default=0.0, metavar="P",
                        help="vibrato probability per window (Augmentation.vibrato_prob)")
    parser.add_argument("--compress", type=float, default=0.0, metavar="P",
                        help="compressor probability per window (Augmentation.compress_prob)")
    parser.add_argument("--channels", type=int, nargs="+", default=None,
                        help="conv block widths, e.g. 32 64 128 256")
    parser.add_argument("--then", choices=("cross_soundfont", "dreamsound"),
                        default="cross_soundfont",
                        help="what runs with the remaining arguments (dreamsound: every "
                             "variant but --channels)")
    args = parser.parse_args(ours)
    if args.then == "dreamsound" and args.channels:
        parser.error("--channels changes the network of a fold only; dreamsound train keeps "
                     "its own")
    if args.pool == "mean":
        InstrumentNetwork.global_pool = staticmethod(global_mean_pool)
    if args.freq_mixstyle > 0:
        # Patched where train() looks it up (the loop module), not on the package.
        training_loop.augment = with_freq_mixstyle(training_loop.augment, args.freq_mixstyle,
                                                   args.mixstyle_alpha)
    overrides = {}
    if args.mixup > 0 or args.vibrato > 0 or args.compress > 0:
        overrides["augmentation"] = training.Augmentation(
            mixup_prob=args.mixup, mixup_alpha=args.mixup_alpha, vibrato_prob=args.vibrato,
            compress_prob=args.compress)
    if args.channels:
        overrides["architecture"] = Architecture(channels=tuple(args.channels))
    if overrides:
        cross_soundfont.train = functools.partial(training.train, **overrides)
        if "augmentation" in overrides:  # what `dreamsound train` gets when it passes none
            augmentation = overrides["augmentation"]
            training_loop.Augmentation = lambda: augmentation
    print(f"variant: pool={args.pool} freq_mixstyle={args.freq_mixstyle} "
          f"alpha={args.mixstyle_alpha} mixup={args.mixup} mixup_alpha={args.mixup_alpha} "
          f"vibrato={args.vibrato} compress={args.compress} channels={args.channels}", flush=True)
    if args.then == "dreamsound":
        from dreamsound.cli import main as dreamsound_main

        sys.argv = ["dreamsound", *rest]
        return dreamsound_main()
    return cross_soundfont.main(rest)


if __name__ == "__main__":
    sys.exit(main())
