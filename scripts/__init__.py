"""Scripts that are not part of the installed package (run them from the repository root).

``python -m scripts.<group>.<name> ...``, e.g. ``python -m scripts.data.render_trainset --help``:

* :mod:`scripts.bench`: benchmarks (speed, memory, Griffin-Lim against librosa);
* :mod:`scripts.data`: rendering and converting data and weights (training sets, the example
  loop, soundfont comparisons);
* :mod:`scripts.experiments`: experiments behind the model cards (cross-soundfont folds,
  variants, probes).

The tests import them as ``scripts.data.render_trainset`` etc. (pytest puts the repository root
on the path: ``pythonpath`` in ``pyproject.toml``).
"""
