"""Trained weights that ship with dreamsound (installed as ``dreamsound.shipped_models``)."""
