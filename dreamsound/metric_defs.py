"""The metric definitions as plain data: the one-line texts shown in ``--help``, the README and
the evaluation report. The formulas live in :mod:`dreamsound.metrics`; this module imports
nothing, so the CLI can print the definitions without loading torch.
"""

from __future__ import annotations

METRIC_DEFINITIONS: dict[str, str] = {
    "confidence": "target confidence: the model's probability for the target class "
                  "(sigmoid per patch, or the model's own output), averaged over patches; 0..1",
    "success": "success: the target is the top-1 class of the clip scores "
               "(or its confidence reaches the given threshold)",
    "mel_db": "mel dB: 20*log10(mel + log_offset) on the model's own mel scale "
              "(log_offset is the model's floor, 0.001 = -60 dB for YAMNet)",
    "mse_db2": "mse_db2: mean over frames and mel bands of the squared difference of the two "
               "mel-dB spectrograms; dB^2",
    "rmse_db": "rmse_db: square root of mse_db2; dB (a uniform 6.02 dB change gives 6.02)",
    "judge_moved": "judge moved: a model outside the dream scores the dream's target at least "
                   "2x and +0.02 over the original's, ranked higher among comparable classes",
    "spectral_convergence_db": "spectral convergence: 20*log10(|| |STFT(x)| - S ||_F / || S ||_F)"
                               " between a waveform's STFT magnitude and the target magnitude S; "
                               "dB, lower is better",
}
