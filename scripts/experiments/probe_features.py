"""Probe: does a representation learned from real recordings carry instrument names to real audio?

Not shipped, not a test. A linear classifier is trained on a frozen model's features of rendered
training clips (class folders, IRMAS codes) and tested on other folders: a soundfont it never
heard (the FluidR3_GM fold) and the real-recording development set
(``scripts/data/real_devset.py``). It asks which representation -- YAMNet's (AudioSet), musicnn's
(MagnaTagATune or Million Song Dataset) or none -- lets 11 instrument names learnt from renders
carry over to real recordings.

Features per clip (``--layer``):
    ``yamnet``  mean and max over its 0.96 s patches of the 1,024-d embedding (2,048-d).
    ``musicnn`` / ``musicnn-msd``: ``pooled`` -- the back end's input, max and mean over time of
    the 753 front/mid-end channels (1,506-d), averaged over the clip's 3 s patches; or
    ``penultimate`` -- the 200-d dense layer before the tags.
Standardised on the training set. Classifier: dropout 0.3 + one linear layer, Adam (lr 1e-3,
weight decay 1e-3), 300 full-batch epochs, seed 0 (fixed before looking at the test clips).
Top-1 accuracy on solo and mixture clips (``-mix-`` in the name), per test folder, with the
per-class solo accuracy. Features are cached per (model, layer, folder) under ``--cache``.

Usage::

    python -m scripts.experiments.probe_features --model musicnn --layer pooled \\
        --train work_data/render/train_l/{timgm6mb,sfgmbank,freepats,generaluserv147,a320u} \\
        --test work_data/render/test/fluidr3gm work_data/real/dev
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see scripts/bench/bench_griffinlim.py

import numpy as np
import torch

from dreamsound.audio import load_audio
from dreamsound.data.irmas import IRMAS_CODES
from dreamsound.models.registry import load_model

LAYERS = {"yamnet": ("embedding",), "musicnn": ("pooled", "penultimate"),
          "musicnn-msd": ("pooled", "penultimate")}


def clip_features(model, name: str, wave: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every layer's feature vector of one clip (see the module docstring).

    One clip at a time on purpose: batching musicnn patches made each clip ~2x slower on this CPU
    (1 thread: 42 ms per clip alone, 100 ms in a batch of 32).
    """
    with torch.no_grad():
        if name == "yamnet":
            patches = model(wave).embeddings
            return {"embedding": torch.cat([patches.mean(0), patches.max(0).values])}
        out = model.network.features(model.front_end.patches(model.log_mel(wave)).unsqueeze(-3))
        return {"pooled": torch.cat([out["max_pool"], out["mean_pool"]], dim=1).mean(0),
                "penultimate": out["penultimate"].mean(0)}


def embed(model, name: str, layer: str, folder: Path, cache: Path
          ) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """``(features [N, D], labels [N], is_mixture [N])`` of every class-folder wav."""
    key = cache / f"{name}-{str(folder.resolve()).strip('/').replace('/', '_')}.npz"
    if not key.is_file():
        items = [(label, path) for label, code in enumerate(IRMAS_CODES)
                 for path in sorted((folder / code).glob("*.wav"))]
        if not items:
            print(f"error: no wavs in class folders under {folder}", file=sys.stderr)
            raise SystemExit(2)
        features: dict[str, list[torch.Tensor]] = {}
        for _, path in items:
            wave = torch.from_numpy(load_audio(path, sample_rate=model.sample_rate))
            for layer_name, vector in clip_features(model, name, wave).items():
                features.setdefault(layer_name, []).append(vector)
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(key, y=np.array([label for label, _ in items]),
                 mix=np.array(["-mix-" in path.name for _, path in items]),
                 **{k: torch.stack(v).numpy() for k, v in features.items()})
    data = np.load(key)
    return torch.from_numpy(data[layer]), torch.from_numpy(data["y"]), data["mix"]


def fit_head(train_x: torch.Tensor, train_y: torch.Tensor, *, hidden: int, epochs: int
             ) -> torch.nn.Module:
    """The probe's classifier (module docstring) on standardised features, in eval mode."""
    torch.manual_seed(0)
    width = train_x.shape[1]
    middle = ([torch.nn.Linear(width, hidden), torch.nn.ReLU(), torch.nn.Dropout(0.3)]
              if hidden else [])
    head = torch.nn.Sequential(torch.nn.Dropout(0.3), *middle,
                               torch.nn.Linear(hidden or width, len(IRMAS_CODES)))
    optimiser = torch.optim.Adam(head.parameters(), lr=1e-3, weight_decay=1e-3)
    for _ in range(epochs):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(head(train_x), train_y).backward()
        optimiser.step()
    return head.eval()


def top1(correct: np.ndarray) -> float | None:
    """Share of true entries, or None for no clips."""
    return float(correct.mean()) if correct.size else None


def main(argv: list[str] | None = None) -> dict[str, dict]:
    """Run the probe; print and return ``{test folder: {"solo", "mixtures", "per_class"}}``
    (top-1 accuracies; None where a folder has no such clips)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="musicnn", choices=sorted(LAYERS))
    parser.add_argument("--layer", default=None, help="feature layer (default: the first)")
    parser.add_argument("--weights", type=Path, default=None, help="weights (yamnet: .h5)")
    parser.add_argument("--train", required=True, nargs="+", type=Path)
    parser.add_argument("--test", required=True, nargs="+", type=Path)
    parser.add_argument("--cache", type=Path, default=Path("work_data/features"))
    parser.add_argument("--hidden", type=int, default=0,
                        help="hidden units of a one-hidden-layer head (0: linear, the default)")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    layer = args.layer or LAYERS[args.model][0]
    if layer not in LAYERS[args.model]:
        parser.error(f"--layer for {args.model}: one of {', '.join(LAYERS[args.model])}")
    torch.set_num_threads(args.threads)
    model = load_model(args.model, weights=args.weights, device="cpu")

    parts = [embed(model, args.model, layer, folder, args.cache) for folder in args.train]
    train_x = torch.cat([p[0] for p in parts])
    train_y = torch.cat([p[1] for p in parts])
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    head = fit_head((train_x - mean) / std, train_y, hidden=args.hidden, epochs=args.epochs)
    print(f"{args.model}/{layer}: trained on {len(train_y)} clips "
          f"({', '.join(p.name for p in args.train)})")
    results: dict[str, dict] = {}
    for folder in args.test:
        test_x, test_y, mixture = embed(model, args.model, layer, folder, args.cache)
        with torch.no_grad():
            correct = (head((test_x - mean) / std).argmax(1) == test_y).numpy()
        labels, solo = test_y.numpy(), ~mixture
        result = {"solo": top1(correct[solo]), "mixtures": top1(correct[mixture]),
                  "per_class": {code: top1(correct[solo & (labels == i)])
                                for i, code in enumerate(IRMAS_CODES)
                                if (solo & (labels == i)).any()}}
        results[str(folder)] = result

        def shown(value: float | None) -> str:
            return "-" if value is None else f"{value:.3f}"

        per_class = " ".join(f"{c} {v:.2f}" for c, v in result["per_class"].items())
        print(f"  {folder}: solo {shown(result['solo'])} (n = {solo.sum()}), mixtures "
              f"{shown(result['mixtures'])} (n = {mixture.sum()}); solo per class: {per_class}")
    return results


if __name__ == "__main__":
    main()
