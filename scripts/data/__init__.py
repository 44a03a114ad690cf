"""Data and weights preparation: ``python -m scripts.data.<name>`` from the repository root."""
