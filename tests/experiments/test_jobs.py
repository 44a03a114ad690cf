"""The job list of the probing experiment: deterministic, seeded, never a label as wrong class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dreamsound.errors import DataError
from dreamsound.experiments import jobs as jb
from dreamsound.experiments.dataset import LabelledClip


def test_job_list_is_deterministic_and_wrong_class_is_never_a_label() -> None:
    classes = ["cel", "cla", "flu", "gac", "vio"]
    rng = np.random.default_rng(0)
    clips = []
    for i in range(200):
        labels = tuple(rng.choice(classes, size=int(rng.integers(1, 4)), replace=False))
        clips.append(LabelledClip(Path(f"/x/{i}.wav"), f"{i:03d}.wav", labels))
    jobs = jb.build_jobs(clips, classes=classes, seed=3)
    assert jobs == jb.build_jobs(clips, classes=classes, seed=3)
    clip_jobs = [j for j in jobs if isinstance(j, jb.ClipJob)]
    assert len(clip_jobs) == 200
    for job in clip_jobs:
        assert job.wrong != job.true
        assert job.wrong not in job.labels
        assert job.wrong in classes
    # Every admissible wrong class gets drawn, and another seed draws differently.
    assert {j.wrong for j in clip_jobs} == set(classes)
    other = [j for j in jb.build_jobs(clips, classes=classes, seed=4) if isinstance(j, jb.ClipJob)]
    assert [j.wrong for j in other] != [j.wrong for j in clip_jobs]
    # A clip's draw does not depend on the other clips in the list.
    alone = jb.build_jobs(clips[7:8], classes=classes, seed=3, noise=False)
    assert alone[0] == clip_jobs[7]
    noise_jobs = [j for j in jobs if isinstance(j, jb.NoiseJob)]
    assert [j.target for j in noise_jobs] == classes
    assert len({j.seed for j in jobs}) == len(jobs)


def test_a_clip_labelled_with_every_class_has_no_wrong_class() -> None:
    clip = LabelledClip(Path("/x/a.wav"), "a.wav", ("cel", "vio"))
    with pytest.raises(DataError, match="no wrong class"):
        jb.build_jobs([clip], classes=["cel", "vio"], seed=0)


def test_a_reference_is_another_clip_of_the_target_class(tmp_path: Path) -> None:
    import soundfile as sf

    rate = 16000
    paths = []
    for name, n in (("a", rate), ("b", rate // 2)):  # told apart by their lengths
        path = tmp_path / f"{name}.wav"
        sf.write(path, (0.1 * np.sin(np.arange(n) / 5.0)).astype(np.float32), rate)
        paths.append(str(path))
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00")
    settings = jb.JobSettings(threshold=0.9, max_steps=1, class_index={}, audio_dir=None,
                              references={"vio": tuple(paths), "flu": (str(broken),)})
    for seed in range(8):  # never the dream's own clip
        chosen = jb._reference(settings, "vio", seed=seed, own=paths[0], rate=rate)
        assert chosen is not None and chosen.shape == (rate // 2,)
    assert jb._reference(settings, "vio", seed=0, own=None, rate=rate) is not None
    only_own = jb.JobSettings(threshold=0.9, max_steps=1, class_index={}, audio_dir=None,
                              references={"vio": (paths[0],)})
    assert jb._reference(only_own, "vio", seed=0, own=paths[0], rate=rate) is None
    assert jb._reference(settings, "cel", seed=0, own=None, rate=rate) is None  # no clip
    assert jb._reference(settings, "flu", seed=0, own=None, rate=rate) is None  # unreadable
