"""musicnn's two pretrained models (tags, weights files) and the loading of their variables.

The weights are safetensors files holding the 64 TensorFlow variables verbatim, written by
``scripts/data/convert_musicnn.py`` (format :data:`WEIGHTS_FORMAT`); an ``.npz`` of the same
variables is read too (:func:`load_variables`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dreamsound.errors import WeightsError
from dreamsound.models.musicnn.network import check_variables
from dreamsound.models.weights import WeightsFile

#: Format tag in the weights' safetensors metadata (``scripts/data/convert_musicnn.py``).
WEIGHTS_FORMAT = "dreamsound-musicnn"

#: The 50 MagnaTagATune tags of ``MTT_musicnn``, in output order (``configuration.py``).
MTT_TAGS: tuple[str, ...] = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast",
    "piano", "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male",
    "singing", "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman",
    "male vocal", "no vocal", "pop", "soft", "sitar", "solo", "man", "classic", "choir", "voice",
    "new age", "dance", "male voice", "female vocal", "beats", "harp", "cello", "no voice",
    "weird", "country", "metal", "female voice", "choral",
)

#: The 50 Million Song Dataset (last.fm) tags of ``MSD_musicnn``, in output order, with the case
#: the package stores ("Mellow", "House", ...); targets are matched case-insensitively anyway.
MSD_TAGS: tuple[str, ...] = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
    "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists",
    "classic rock", "soul", "indie rock", "Mellow", "electronica", "80s", "folk", "90s", "chill",
    "instrumental", "punk", "oldies", "blues", "hard rock", "ambient", "acoustic",
    "experimental", "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country",
    "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal", "Progressive rock",
    "60s", "rnb", "indie pop", "sad", "House", "happy",
)


@dataclass(frozen=True)
class Variant:
    """One pretrained musicnn model.

    Attributes
    ----------
    name : str
        Registry name (``musicnn``, ``musicnn-msd``).
    tf_name : str
        The package's name (``MTT_musicnn``), written in the weights' metadata.
    tags : tuple of str
        Output order.
    weights : WeightsFile
        Where its safetensors file is found.
    summary : str
        One line for ``dreamsound models``.
    """

    name: str
    tf_name: str
    tags: tuple[str, ...]
    weights: WeightsFile
    summary: str


MTT_WEIGHTS = WeightsFile(
    model="musicnn",
    filename="model.safetensors",
    url=None,
    # Digest of models/musicnn/model.safetensors as written by scripts/data/convert_musicnn.py
    # from the wheel's MTT_musicnn checkpoint (tests/test_musicnn.py rebuilds it byte for byte).
    sha256="03e5b90a797beb4d141f9def5316367a5e073c325cd54032e090bed41fffa9e4",
    source="ships with dreamsound (models/musicnn/, converted from musicnn 0.1.0, ISC)",
    env_var="DREAMSOUND_MUSICNN_WEIGHTS",
    packaged="musicnn/model.safetensors",
    size=3_174_284,
)

MSD_WEIGHTS = WeightsFile(
    model="musicnn-msd",
    filename="model.safetensors",
    url=None,
    # Digest of models/musicnn_msd/model.safetensors (converted from MSD_musicnn's variables).
    sha256="05a3d5339ca80701207dc0aab8a7ce40da5725a2c587ffc6b89f9b5fb06d5421",
    source="ships with dreamsound (models/musicnn_msd/, converted from musicnn 0.1.0, ISC)",
    env_var="DREAMSOUND_MUSICNN_MSD_WEIGHTS",
    packaged="musicnn_msd/model.safetensors",
    size=3_174_284,
)

MTT = Variant("musicnn", "MTT_musicnn", MTT_TAGS, MTT_WEIGHTS,
              "musicnn MagnaTagATune tagger (Pons & Serra 2019; 50 tags, 16 kHz, 3 s patches)")
MSD = Variant("musicnn-msd", "MSD_musicnn", MSD_TAGS, MSD_WEIGHTS,
              "musicnn Million Song Dataset tagger (Pons & Serra 2019; 50 last.fm tags, 16 kHz)")


def load_variables(path: str | Path, *, expect: str | None = None) -> dict[str, np.ndarray]:
    """musicnn's TensorFlow variables from a weights file.

    Parameters
    ----------
    path : path
        A safetensors file written by ``scripts/data/convert_musicnn.py`` (format
        ``dreamsound-musicnn``), or an ``.npz`` of the variables keyed by TensorFlow name
        (optimiser entries such as ``conv2d/kernel/Adam`` are ignored).
    expect : str, optional
        ``MTT_musicnn`` or ``MSD_musicnn``: a safetensors file whose metadata names the other
        model is refused (its tags would be wrong).

    Raises
    ------
    WeightsError
        Unreadable, foreign or mismatched file.
    """
    path = Path(path)
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                variables = {k: np.asarray(archive[k], dtype=np.float32) for k in archive.files
                             if "/Adam" not in k and k not in ("beta1_power", "beta2_power")}
        else:
            from safetensors import SafetensorError, safe_open

            try:
                with safe_open(str(path), framework="numpy") as handle:
                    metadata = handle.metadata() or {}
                    if metadata.get("format") != WEIGHTS_FORMAT:
                        raise WeightsError(
                            f"{path}: not musicnn weights (format {metadata.get('format')!r}, "
                            f"expected {WEIGHTS_FORMAT!r}; convert the checkpoint with "
                            "scripts/data/convert_musicnn.py)")
                    if expect is not None and metadata.get("model") != expect:
                        raise WeightsError(f"{path} holds {metadata.get('model')} weights, not "
                                           f"{expect}")
                    variables = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
            except SafetensorError as exc:
                raise WeightsError(f"cannot read musicnn weights {path}: {exc}") from None
    except (OSError, ValueError) as exc:
        raise WeightsError(f"cannot read musicnn weights {path}: {exc}") from None
    check_variables(variables)
    return variables
