"""Experiments over data sets: the probing evaluation, its report and journal."""
