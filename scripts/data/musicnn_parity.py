"""Measure the musicnn port against TensorFlow's outputs: the figures in the model cards.

Reads ``shared/musicnn`` (golden_MTT_musicnn.npz, golden_MSD_musicnn.npz; see its README) and
prints one JSON document: per model and check, the largest difference over the five clips
(max abs, or the smallest cosine for the input gradient), plus per clip where it matters.
``tests/test_musicnn.py`` asserts the bounds; this only reports.

Usage, from the repository root::

    python -m scripts.data.musicnn_parity [--shared ../shared] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

VARIANTS = {"musicnn": "MTT", "musicnn-msd": "MSD"}
FEATURES = ("timbral", "temporal", "cnn1", "cnn2", "cnn3")


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def measure(kit: Path) -> dict:
    """``{model: {check: value}}`` (and ``front_end``) for the reference kit in ``kit``."""
    import torch

    from dreamsound.models.registry import load_model

    report: dict = {}
    for name, tf in VARIANTS.items():
        model = load_model(name, device="cpu")
        golden = dict(np.load(kit / f"golden_{tf}_musicnn.npz", allow_pickle=False))
        index = int(golden["grad_tag_index"])
        rows: dict[str, dict[str, float]] = {}
        for clip in (str(c) for c in golden["clips"]):
            x = torch.from_numpy(golden[f"{clip}__batch"]).unsqueeze(1).requires_grad_(True)
            out = model.network.features(x)
            out["logits"][:, index].sum().backward()
            logits = out["logits"].detach().numpy()
            row = {"logits": _max_abs(logits, golden[f"{clip}__logits"]),
                   "taggram": _max_abs(1 / (1 + np.exp(-logits.astype(np.float64))),
                                       golden[f"{clip}__taggram"]),
                   "penultimate": _max_abs(out["penultimate"].detach().numpy(),
                                           golden[f"{clip}__penultimate"]),
                   "features": max(_max_abs(out[k].detach().numpy().transpose(0, 2, 1),
                                            golden[f"{clip}__{k}"]) for k in FEATURES),
                   "pools": max(_max_abs(out[k].detach().numpy(), golden[f"{clip}__{k}"])
                                for k in ("max_pool", "mean_pool")),
                   "grad_cosine": _cosine(x.grad.squeeze(1).numpy(), golden[f"{clip}__grad"])}
            rows[clip] = row
        summary = {key: max(r[key] for r in rows.values()) for key in next(iter(rows.values()))
                   if key != "grad_cosine"}
        summary["grad_cosine_min"] = min(r["grad_cosine"] for r in rows.values())
        summary["grad_cosine_min_without_sine440"] = min(
            r["grad_cosine"] for c, r in rows.items() if c != "sine440")
        report[name] = {"max_over_clips": summary, "per_clip": rows}

    model = load_model("musicnn", device="cpu")
    front_end = model.front_end
    golden = dict(np.load(kit / "golden_MTT_musicnn.npz", allow_pickle=False))
    rows = {}
    for clip in (str(c) for c in golden["clips"]):
        wave = torch.from_numpy(golden[f"{clip}__wave16k"])
        with torch.no_grad():
            mel = front_end.mel_power(front_end.power(front_end.stft(front_end.pad(wave))))
            log_mel = front_end(wave)
            batch = front_end.patches(log_mel)
        reference_mel = golden[f"{clip}__mel"]
        rows[clip] = {"log_mel": _max_abs(log_mel.numpy(), golden[f"{clip}__logmel_f32"]),
                      "mel_relative_to_peak": _max_abs(mel.numpy(), reference_mel)
                      / float(reference_mel.max()),
                      "batch": _max_abs(batch.numpy(), golden[f"{clip}__batch"])}
    report["front_end"] = {"max_over_clips": {k: max(r[k] for r in rows.values())
                                              for k in next(iter(rows.values()))},
                           "per_clip": rows}
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path,
                        default=Path(os.environ.get("DREAMSOUND_SHARED",
                                                    Path(__file__).resolve().parents[3]
                                                    / "shared")))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    print(json.dumps(measure(args.shared / "musicnn"), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
