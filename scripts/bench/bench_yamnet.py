"""Benchmark YAMNet forward+backward (gradient w.r.t. the input only) on 10 s of audio.

The dream engine's inner step is: waveform (or log-mel) -> logits -> target objective ->
backward to the input, with the parameters frozen. This script times that step on the CPU and
prints a table (median of ``--repeats`` runs after ``--warmup`` runs).

``--layers`` adds where the time goes: per kind of convolution (the first full 3x3, depthwise
3x3 at stride 1 and 2, pointwise 1x1), the forward and forward + input-gradient time of every
unit on the patches it sees, and the forward's multiply-adds per second.

Usage::

    python -m scripts.bench.bench_yamnet --weights ../shared/yamnet/yamnet.h5 [--layers]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from dreamsound.models.registry import load_model


def _median_seconds(step: Callable[[], None], *, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="../shared/yamnet/yamnet.h5")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--target", type=int, default=132, help="class index (132 = Music)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--layers", action="store_true",
                        help="also time each kind of convolution unit")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model = load_model("yamnet", weights=args.weights, device=args.device)
    sr = model.sample_rate
    generator = torch.Generator().manual_seed(0)
    waveform = 0.1 * torch.randn(int(args.seconds * sr), generator=generator)
    waveform = waveform.to(model.device)
    with torch.no_grad():
        log_mel = model.log_mel(waveform)
    n_patches = model.front_end.patches(log_mel).shape[0]

    def sync() -> None:
        if model.device.type == "cuda":
            torch.cuda.synchronize()

    def from_log_mel() -> None:
        x = log_mel.clone().requires_grad_(True)
        model.logits_from_log_mel(x)[:, args.target].mean().backward()
        sync()

    def from_waveform() -> None:
        x = waveform.clone().requires_grad_(True)
        model(x).logits[:, args.target].mean().backward()
        sync()

    def forward_only() -> None:
        with torch.no_grad():
            model(waveform)
        sync()

    rows = [
        ("forward only (no grad), waveform", forward_only),
        ("forward+backward from log-mel", from_log_mel),
        ("forward+backward from waveform", from_waveform),
    ]
    print(f"YAMNet, {args.seconds:g} s of audio = {n_patches} patches, device {args.device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of "
          f"{args.repeats} after {args.warmup} warm-up runs")
    print(f"{'step':<36} {'seconds':>9}")
    for name, step in rows:
        seconds = _median_seconds(step, warmup=args.warmup, repeats=args.repeats)
        print(f"{name:<36} {seconds:>9.4f}")
    if args.layers:
        _time_layers(model, model.front_end.patches(log_mel).unsqueeze(1), args)


def _time_layers(model, patches: torch.Tensor, args: argparse.Namespace) -> None:
    """Per kind of unit: summed median forward and forward + input-gradient times (ms) and the
    forward's GFLOP/s (2 x multiply-adds / s), each unit on the activations it really sees."""
    totals: dict[str, list[float]] = {}
    x = patches  # as the network sees them (a view of the log-mel; units keep channels-last)
    for unit in model.network.units.values():
        kind = ("depthwise" if unit.groups > 1 else "pointwise" if unit.kernel_size == (1, 1)
                else "full") + f" 3x3/{unit.stride[0]}" * (unit.kernel_size != (1, 1))
        with torch.no_grad():
            out = unit(x)
        macs = out.numel() * unit.in_channels // unit.groups * unit.kernel_size[0] \
            * unit.kernel_size[1]
        upstream = torch.ones_like(out)
        seen = x.detach().requires_grad_(True)

        def forward(unit=unit, x=x) -> None:
            with torch.no_grad():
                unit(x)

        def both(unit=unit, seen=seen, upstream=upstream) -> None:
            torch.autograd.grad(unit(seen), seen, upstream)

        fwd = _median_seconds(forward, warmup=args.warmup, repeats=args.repeats)
        fb = _median_seconds(both, warmup=args.warmup, repeats=args.repeats)
        total = totals.setdefault(kind, [0.0, 0.0, 0.0])
        total[0] += fwd
        total[1] += fb
        total[2] += macs
        x = out
    print(f"\n{'units':<20} {'forward ms':>11} {'fwd+grad ms':>12} {'forward GFLOP/s':>16}")
    for kind, (fwd, fb, macs) in totals.items():
        print(f"{kind:<20} {fwd * 1e3:>11.2f} {fb * 1e3:>12.2f} {2 * macs / fwd / 1e9:>16.0f}")
    print(f"{'all':<20} {sum(t[0] for t in totals.values()) * 1e3:>11.2f} "
          f"{sum(t[1] for t in totals.values()) * 1e3:>12.2f}")


if __name__ == "__main__":
    main()
