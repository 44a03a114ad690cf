"""Resolve model weights files.  (Interface fixed; helper B completes resolution/download.)"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dreamsound.errors import WeightsError


@dataclass(frozen=True)
class WeightsFile:
    """One downloadable weights file in the registry.

    Attributes
    ----------
    model : str
        Registry name of the model it belongs to.
    filename : str
        File name in the cache (``yamnet.h5``).
    url : str or None
        Official download address (None: ships with the package, see ``packaged``).
    sha256 : str or None
        Expected SHA-256 hex digest of the file.
    source : str
        One line saying where the file comes from (shown in errors and ``dreamsound models``).
    env_var : str
        Environment variable that may point at the file.
    packaged : str or None
        ``"<dir>/<file>"`` inside ``dreamsound.shipped_models`` when it ships with the package.
    """

    model: str
    filename: str
    url: str | None
    sha256: str | None
    source: str
    env_var: str
    packaged: str | None = None


def resolve_weights(spec: WeightsFile, explicit: str | Path | None = None) -> Path:
    """Return a usable path for ``spec``: explicit path -> env var -> package -> cache -> download."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise WeightsError(f"weights file not found: {path}")
        return path
    raise WeightsError(f"no weights for {spec.model}: pass --weights PATH")
