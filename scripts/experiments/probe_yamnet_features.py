"""Probe: does a representation learned from real recordings close the cross-soundfont gap?

Not shipped, not a test. The instrument CNN trained on TimGM6mb + sf_GMbank (which share most
samples) recognises only ~70 % of solo clips rendered through FluidR3_GM (see the model card).
This asks whether that is the network's fault or the training data's: it trains a linear
classifier on frozen YAMNet embeddings (AudioSet: real recordings of every instrument) of the same
training clips and tests it on the same held-out FluidR3_GM clips.

Features per clip: mean and max over its 0.96 s patches of YAMNet's 1,024-d embedding, standardised
on the training set. Classifier: dropout 0.3 + one linear layer, Adam (lr 1e-3, weight decay
1e-3), 300 full-batch epochs, seed 0 (fixed before looking at the test clips). Top-1 accuracy on
solo and mixture clips, as in ``scripts/experiments/cross_soundfont.py``.

Usage::

    python -m scripts.experiments.probe_yamnet_features --weights ../shared/yamnet/yamnet.h5 \\
        --train work_data/render/train/timgm6mb work_data/render/train/sfgmbank \\
        --test work_data/render/test/fluidr3gm
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see scripts/bench/bench_griffinlim.py

import numpy as np
import torch

from dreamsound.audio import load_audio
from dreamsound.data.irmas import IRMAS_CODES
from dreamsound.models.registry import load_model


def embed(model, folders: list[Path]) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """``(features [N, 2048], labels [N], is_mixture [N])`` of every class-folder wav."""
    features, labels, mixture = [], [], []
    for folder in folders:
        for label, code in enumerate(IRMAS_CODES):
            for path in sorted((folder / code).glob("*.wav")):
                wave = torch.from_numpy(load_audio(path, sample_rate=model.sample_rate))
                with torch.no_grad():
                    patches = model(wave).embeddings
                features.append(torch.cat([patches.mean(0), patches.max(0).values]))
                labels.append(label)
                mixture.append("-mix-" in path.name)
    if not features:
        raise SystemExit(f"no wavs in class folders under {', '.join(map(str, folders))}")
    return torch.stack(features), torch.tensor(labels), np.array(mixture)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True, type=Path, help="yamnet.h5 or .tflite")
    parser.add_argument("--train", required=True, nargs="+", type=Path)
    parser.add_argument("--test", required=True, type=Path)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model("yamnet", weights=args.weights, device="cpu")

    train_x, train_y, _ = embed(model, args.train)
    test_x, test_y, mixture = embed(model, [args.test])
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std

    torch.manual_seed(0)
    head = torch.nn.Sequential(torch.nn.Dropout(0.3), torch.nn.Linear(train_x.shape[1],
                                                                      len(IRMAS_CODES)))
    optimiser = torch.optim.Adam(head.parameters(), lr=1e-3, weight_decay=1e-3)
    for _ in range(300):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(head(train_x), train_y).backward()
        optimiser.step()
    head.eval()
    with torch.no_grad():
        correct = (head(test_x).argmax(1) == test_y).numpy()
    print(f"trained on {len(train_y)} clips ({', '.join(p.name for p in args.train)}); "
          f"tested on {args.test.name}: solo top-1 {correct[~mixture].mean():.3f} "
          f"(n = {(~mixture).sum()}), mixture top-1 {correct[mixture].mean():.3f} "
          f"(n = {mixture.sum()})")


if __name__ == "__main__":
    main()
