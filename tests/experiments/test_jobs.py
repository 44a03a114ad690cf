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
