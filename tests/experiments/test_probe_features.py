"""The representation probe: a linear head on frozen musicnn features learns separable classes,
and features are cached per folder (a second run reads them, not the audio)."""

from __future__ import annotations

from pathlib import Path

from scripts.experiments import probe_features
from tests.experiments.irmas_sets import write_training_set


def test_probe_learns_separable_classes_and_caches_features(tmp_path: Path, capsys) -> None:
    data = write_training_set(tmp_path / "clips", {"cel": 3, "pia": 3}, seconds=3.0)
    cache = tmp_path / "features"
    argv = ["--model", "musicnn", "--train", str(data), "--test", str(data), "--cache",
            str(cache), "--epochs", "100", "--threads", "1"]
    result = probe_features.main(argv)[str(data)]
    # Tones of 220 and 440 Hz: a probe that cannot tell them apart is broken.
    assert result == {"solo": 1.0, "mixtures": None, "per_class": {"cel": 1.0, "pia": 1.0}}
    assert len(list(cache.glob("musicnn-*.npz"))) == 1
    assert "solo 1.000 (n = 6), mixtures - (n = 0)" in capsys.readouterr().out

    for wav in data.rglob("*.wav"):  # the cache must be what the second run reads
        wav.write_bytes(b"not audio")
    assert probe_features.main(argv)[str(data)]["solo"] == 1.0
