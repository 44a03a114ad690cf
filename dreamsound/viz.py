"""Figures: a dream's spectrograms (original, dreamed, difference, gradient) in one PNG.

All four panels are on the model's own mel scale (what the model hears), with time in seconds
and frequency in Hz (each row is one mel band, labelled with its centre frequency). Levels are in
dB (:func:`dreamsound.metrics.mel_db`). Uses matplotlib's Agg canvas directly, so it never
touches the user's interactive backend and needs no display.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dreamsound import metrics
from dreamsound.io_utils import atomic_write

if TYPE_CHECKING:
    from dreamsound.engine.result import DreamResult

#: Dynamic range shown in the level panels, dB below the loudest value.
TOP_DB = 80.0


def _hz_label(hz: float) -> str:
    return f"{hz / 1000:.1f}k" if hz >= 1000 else f"{hz:.0f}"


def _panel(ax, image: np.ndarray, *, frame_rate: float, band_hz: np.ndarray, title: str,
           cmap: str, vmin: float, vmax: float, unit: str, fig) -> None:
    frames, bands = image.shape
    extent = (0.0, frames / frame_rate, -0.5, bands - 0.5)
    shown = ax.imshow(image.T, origin="lower", aspect="auto", extent=extent, cmap=cmap,
                      vmin=vmin, vmax=vmax, interpolation="nearest")
    ticks = np.unique(np.linspace(0, bands - 1, min(bands, 7)).round().astype(int))
    ax.set_yticks(ticks)
    ax.set_yticklabels([_hz_label(band_hz[i]) for i in ticks])
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (Hz, mel bands)")
    ax.set_title(title, fontsize=10)
    bar = fig.colorbar(shown, ax=ax, pad=0.01)
    bar.set_label(unit)


def plot_dream(result: DreamResult, path: str | Path, *, inputs: Sequence[str | Path] = (),
               dpi: int = 110) -> Path:
    """Write the four-panel PNG of a dream atomically and return its path.

    Panels: the original's log-mel (dB), the dreamed sound's (the rendered audio as the model
    hears it, dB), their difference (dB, red = louder), and the gradient of the first step
    (spectrogram domain: d objective / d log-mel, red = the model wants more; waveform domain:
    the gradient waveform's log-mel in dB).

    Parameters
    ----------
    result : DreamResult
    path : path
        The PNG to write (never one of ``inputs``).
    inputs : paths
        Files that must not be overwritten.
    dpi : int
        Resolution.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    report = result.report.to_json()
    scale = result.front_end
    original = metrics.mel_db(result.spectrograms["original"], front_end=scale).numpy()
    dreamed = metrics.mel_db(result.spectrograms["rendered"], front_end=scale).numpy()
    difference = dreamed - original
    gradient = np.asarray(result.spectrograms["gradient"], dtype=np.float64)

    top = max(float(original.max()), float(dreamed.max()))
    common = dict(frame_rate=result.frame_rate, band_hz=result.band_hz)
    fig = Figure(figsize=(12, 7.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2, sharex=True)
    confidence = report.get("confidence_before")
    label = report.get("target") or f"layer {report.get('layer')}"
    before = f" — {label}: {confidence:.2f}" if confidence is not None else ""
    _panel(axes[0, 0], original, title=f"original{before}", cmap="magma", vmin=top - TOP_DB,
           vmax=top, unit="dB", fig=fig, **common)
    after = report.get("confidence_rendered")
    after_text = f" — {label}: {after:.2f}" if after is not None else ""
    _panel(axes[0, 1], dreamed, title=f"dreamed (rendered audio){after_text}", cmap="magma",
           vmin=top - TOP_DB, vmax=top, unit="dB", fig=fig, **common)
    span = max(float(np.percentile(np.abs(difference), 99.5)), 1e-6)
    _panel(axes[1, 0], difference,
           title=f"difference (rmse {report.get('rmse_db_rendered', float('nan')):.2f} dB)",
           cmap="RdBu_r", vmin=-span, vmax=span, unit="dB", fig=fig, **common)
    if report.get("domain") == "spectrogram":
        g_span = max(float(np.percentile(np.abs(gradient), 99.5)), 1e-12)
        _panel(axes[1, 1], gradient, title="gradient (first step, on the log-mel)",
               cmap="RdBu_r", vmin=-g_span, vmax=g_span, unit="d objective / d log-mel",
               fig=fig, **common)
    else:
        g_db = metrics.mel_db(gradient, front_end=scale).numpy()
        _panel(axes[1, 1], g_db, title="gradient waveform (first step)", cmap="magma",
               vmin=float(g_db.max()) - TOP_DB, vmax=float(g_db.max()), unit="dB", fig=fig,
               **common)
    name = Path(str(report.get("input"))).name
    fig.suptitle(f"{name} — {report.get('model')}, {report.get('domain')} domain, "
                 f"{report.get('steps')} steps", fontsize=11)
    target = Path(path)
    with atomic_write(target, inputs=inputs) as temp:
        fig.savefig(temp, format="png", dpi=dpi)
    return target

