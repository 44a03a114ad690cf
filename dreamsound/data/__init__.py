"""Data set readers."""
