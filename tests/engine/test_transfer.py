"""Judges: the "moved" rule, the concept map across vocabularies, verdicts on real sounds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dreamsound import metrics
from dreamsound.engine.transfer import judge_knows, judge_sound, target_concept
from dreamsound.errors import TargetError
from dreamsound.models.concepts import (
    CONCEPTS,
    comparable_indices,
    concept_indices,
    find_concept,
)


def test_judge_moved_needs_double_plus_two_points_and_a_better_rank():
    assert metrics.judge_moved(0.01, 0.05, 6, 3)            # x5, +0.04, climbs
    assert not metrics.judge_moved(0.01, 0.025, 6, 3)       # +0.015 only
    assert not metrics.judge_moved(0.30, 0.50, 6, 3)        # less than double
    assert not metrics.judge_moved(0.01, 0.05, 3, 3)        # same rank, not first
    assert not metrics.judge_moved(0.01, 0.05, 3, 4)        # falls
    assert metrics.judge_moved(0.2, 0.9, 1, 1)              # stays first
    assert "judge_moved" in metrics.METRIC_DEFINITIONS


def test_judge_moved_is_its_two_halves():
    # Each half alone, so a report can say which one held a judge back.
    assert metrics.judge_score_rose(0.01, 0.05) and not metrics.judge_rank_climbed(3, 3)
    assert not metrics.judge_score_rose(0.01, 0.025) and metrics.judge_rank_climbed(6, 3)
    assert not metrics.judge_score_rose(0.30, 0.50) and metrics.judge_rank_climbed(1, 1)
    for before, after, rank_before, rank_after in [(0.01, 0.05, 6, 3), (0.01, 0.025, 6, 3),
                                                   (0.01, 0.05, 3, 4), (0.2, 0.9, 1, 1)]:
        assert metrics.judge_moved(before, after, rank_before, rank_after) == (
            metrics.judge_score_rose(before, after)
            and metrics.judge_rank_climbed(rank_before, rank_after))


def test_concepts_name_the_same_sound_in_every_vocabulary():
    violin = find_concept("vio")
    assert violin is find_concept("Violin, fiddle") is find_concept("violin")
    audioset = ["Music", "Violin, fiddle", "Cello", "Speech"]
    assert concept_indices(violin, audioset) == [1]
    mtt = ["guitar", "techno", "violin", "vocal", "singing"]
    assert concept_indices(find_concept("voi"), mtt) == [4, 3]  # the most specific first
    assert concept_indices(find_concept("sax"), mtt) == []       # MTT has no saxophone
    assert comparable_indices(mtt) == [0, 2, 3, 4]
    assert [c.irmas for c in CONCEPTS][:3] == ["cel", "cla", "flu"]


def test_targets_resolve_through_the_concept_map(debug_model):
    from dreamsound.models.base import resolve_class_name

    audioset = ["Music", "Acoustic guitar", "Violin, fiddle", "Singing"]
    assert resolve_class_name("gac", audioset) == 1
    assert resolve_class_name("voice", audioset) == 3
    with pytest.raises(TargetError, match="has no class 'clarinet'"):
        resolve_class_name("clarinet", audioset)  # a concept this vocabulary lacks
    assert debug_model.resolve_class("Violin, fiddle") == debug_model.resolve_class("vio")


def test_a_judge_moves_on_its_own_target_and_not_on_silence(debug_model, chord):
    from dreamsound.api import Dreamer
    from dreamsound.config import DreamConfig

    flute = find_concept("flute")
    # The debug model dreamed toward flute judges that dream: it must move.
    dream = Dreamer(debug_model, DreamConfig(style="exact", steps=15, step_size=1.0)).dream(
        chord, target="flute", sample_rate=16000)
    verdict = judge_sound(debug_model, flute, chord, dream.audio, 16000)
    assert verdict.moved and verdict.confidence_after > verdict.confidence_before
    assert verdict.rank_after <= verdict.rank_before and verdict.concept == "flute"
    # The same sound judged against itself cannot move.
    same = judge_sound(debug_model, flute, chord, chord, 16000)
    assert not same.moved and same.confidence_after == pytest.approx(same.confidence_before)
    assert target_concept(debug_model, debug_model.resolve_class("flute")) is flute


def test_judges_refuse_what_they_cannot_hear(debug_model):
    from dreamsound.api import Dreamer

    class NoFlute:
        name, class_names, class_codes = "tagger", ["techno", "violin"], []

    assert not judge_knows(NoFlute(), find_concept("flute"))
    with pytest.raises(TargetError, match="no class"):
        judge_sound(NoFlute(), find_concept("flute"), np.zeros(16000, np.float32),
                    np.zeros(16000, np.float32), 16000)
    with pytest.raises(Exception, match="never takes part"):
        Dreamer(debug_model, judges=[debug_model])


def test_cli_dream_reports_judges(tmp_path):
    import json

    from typer.testing import CliRunner

    from dreamsound.cli import app

    result = CliRunner().invoke(app, ["dream", "noise:1s", "-m", "debug", "-t", "violin", "-n",
                                      "2", "--judge", "instrument", "--out", f"{tmp_path}/",
                                      "--json"])
    assert result.exit_code == 0, result.output
    judges = json.loads(result.stdout)["judges"]
    assert [j["model"] for j in judges] == ["instrument"]
    assert {"confidence_before", "confidence_after", "rank_before", "rank_after", "moved",
            "top_after", "target", "concept"} <= set(judges[0])
    bad = CliRunner().invoke(app, ["dream", "noise:1s", "-m", "debug", "--judge", "debug",
                                   "--out", f"{tmp_path}/x/"])
    assert bad.exit_code == 2 and "never takes part" in bad.output
    assert not (tmp_path / "x").exists()


def test_cli_dream_table_names_a_judge_without_the_target_class(tmp_path):
    """musicnn has no clarinet tag: the table says so instead of failing on the missing score."""
    from typer.testing import CliRunner

    from dreamsound.cli import app

    result = CliRunner().invoke(app, ["dream", "noise:1s", "-m", "debug", "-t", "clarinet", "-n",
                                      "2", "--judge", "musicnn", "--out", f"{tmp_path}/"])
    assert result.exit_code == 0, result.output
    assert "musicnn has no class for clarinet" in " ".join(result.output.split())


def test_matched_noise_has_the_dreams_distance(debug_model, chord):
    from dreamsound.engine.transfer import matched_noise

    noisy = matched_noise(chord, 2.0, debug_model, seed=1)
    with torch.no_grad():
        distance = metrics.rmse_db(debug_model.log_mel(torch.from_numpy(noisy)),
                                   debug_model.log_mel(torch.from_numpy(chord)),
                                   front_end=debug_model.front_end)
    assert distance == pytest.approx(2.0, abs=1e-3)
    assert np.array_equal(noisy, matched_noise(chord, 2.0, debug_model, seed=1))


def test_a_recording_mixed_at_a_distance_keeps_the_original_and_the_distance(debug_model, chord):
    from dreamsound.engine.transfer import mixed_at_distance

    rate = debug_model.sample_rate
    short_tone = (0.3 * np.sin(2 * np.pi * 1500.0 * np.arange(rate // 4) / rate)).astype(
        np.float32)  # a quarter second, repeated to the chord's length
    mixed = mixed_at_distance(chord, short_tone, 3.0, debug_model)
    assert mixed.shape == chord.shape and mixed.dtype == np.float32
    with torch.no_grad():
        distance = metrics.rmse_db(debug_model.log_mel(torch.from_numpy(mixed)),
                                   debug_model.log_mel(torch.from_numpy(chord)),
                                   front_end=debug_model.front_end)
    assert distance == pytest.approx(3.0, abs=1e-3)
    added = mixed - chord  # a scaled copy of the tone, repeated, nothing else
    gain = float(np.dot(added, np.resize(short_tone, chord.size))
                 / np.dot(np.resize(short_tone, chord.size), np.resize(short_tone, chord.size)))
    assert gain > 0
    assert np.allclose(added, gain * np.resize(short_tone, chord.size), atol=1e-6)
