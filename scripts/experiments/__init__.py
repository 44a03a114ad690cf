"""Experiments behind the model cards: ``python -m scripts.experiments.<name>`` from the
repository root."""
