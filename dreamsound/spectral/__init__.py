"""Spectral building blocks in torch: STFT, mel matrices, log-mel and patching, and inversion.

Everything here is differentiable with respect to the waveform, works on any leading batch shape
``[..., n]`` and runs on whatever device its inputs live on. This package only re-exports:

* :mod:`dreamsound.spectral.analysis`: the periodic Hann window, framing and the forward STFT;
* :mod:`dreamsound.spectral.frontend`: mel matrices, :class:`FrontEndConfig` and
  :class:`LogMelFrontEnd` (log-mel, patches, band geometry, inversion of a log-mel);
* :mod:`dreamsound.spectral.inversion`: inverse STFT, overlap-add, fast Griffin-Lim and
  mel -> linear magnitude.

Imports point one way: ``frontend -> inversion -> analysis``.

Conventions (shared by every model front-end):

* frames start at sample 0 (no centring) and the window is ``win_length`` samples long, zero-padded
  at the *end* to ``n_fft`` before the FFT (TensorFlow's ``tf.signal.stft`` convention; note that
  ``torch.stft`` would centre a short window inside ``n_fft`` instead, which shifts every frame);
* the window is a *periodic* Hann window;
* the spectrogram is a **magnitude** (not power) spectrogram.
"""

from dreamsound.spectral.analysis import frame_signal, hann_window, stft, stft_magnitude
from dreamsound.spectral.frontend import (
    FrontEndConfig,
    LogMelFrontEnd,
    hz_to_mel_htk,
    slaney_mel_matrix,
    tf_mel_matrix,
    unlog_mel,
)
from dreamsound.spectral.inversion import (
    ISTFT_EDGE_FLOOR,
    griffin_lim,
    istft,
    mel_to_linear,
    overlap_add,
)

__all__ = [
    "ISTFT_EDGE_FLOOR",
    "FrontEndConfig",
    "LogMelFrontEnd",
    "frame_signal",
    "griffin_lim",
    "hann_window",
    "hz_to_mel_htk",
    "istft",
    "mel_to_linear",
    "overlap_add",
    "slaney_mel_matrix",
    "stft",
    "stft_magnitude",
    "tf_mel_matrix",
    "unlog_mel",
]
