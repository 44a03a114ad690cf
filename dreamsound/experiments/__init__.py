"""Experiments over data sets: the probing evaluation (``dreamsound evaluate``).

Arrows point down: :mod:`~.evaluate` (the orchestration) uses :mod:`~.executors` (inline, a
process pool, a Ray cluster), :mod:`~.jobs` (what a job is and how one runs), :mod:`~.journal`
(``results.jsonl`` and ``run.json``), :mod:`~.report` (summary, report.md/json, heatmap),
:mod:`~.dataset` (clips, seeded selection, class mapping) and :mod:`~.seeds`.
"""
