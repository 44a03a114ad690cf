"""One table of names across models: IRMAS code ↔ AudioSet class ↔ MagnaTagATune / MSD tag.

A *concept* ("violin") names the same sound in every vocabulary a model may use: the IRMAS code
and display name (the instrument CNNs), AudioSet display names (YAMNet), MagnaTagATune tags
(musicnn) and Million Song Dataset tags (musicnn-msd). :func:`concept_indices` finds a concept's
classes in any model by matching these names against the model's own class names and codes, so
``--target violin`` and the judges (:mod:`dreamsound.engine.transfer`) work on every model,
including plug-ins that use one of these vocabularies.

Where a vocabulary has no class for a concept the entry is empty (MagnaTagATune has no clarinet,
organ, saxophone or trumpet tag); a model lacking a concept cannot judge it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dreamsound.data.irmas import IRMAS_CODES, IRMAS_NAMES


@dataclass(frozen=True)
class Concept:
    """One sound, named in each vocabulary.

    Attributes
    ----------
    name : str
        The concept's own name (the IRMAS display name).
    irmas : str
        IRMAS class code.
    audioset : tuple of str
        AudioSet display names (YAMNet's class names).
    mtt : tuple of str
        MagnaTagATune tags (musicnn), the most specific first.
    msd : tuple of str
        Million Song Dataset tags (musicnn-msd).
    """

    name: str
    irmas: str
    audioset: tuple[str, ...] = ()
    mtt: tuple[str, ...] = ()
    msd: tuple[str, ...] = ()

    def names(self) -> tuple[str, ...]:
        """Every name of the concept, in any vocabulary."""
        return (self.name, self.irmas, *self.audioset, *self.mtt, *self.msd)


#: The instrument concepts, in IRMAS order. Voice is sung vocals (IRMAS's "voi"): AudioSet's
#: "Singing"; MagnaTagATune's "singing" and its vocal tags. Both guitars share MTT's and MSD's
#: one "guitar" tag.
CONCEPTS: tuple[Concept, ...] = (
    Concept("cello", "cel", ("Cello",), ("cello",)),
    Concept("clarinet", "cla", ("Clarinet",)),
    Concept("flute", "flu", ("Flute",), ("flute",)),
    Concept("acoustic guitar", "gac", ("Acoustic guitar",), ("guitar",), ("guitar",)),
    Concept("electric guitar", "gel", ("Electric guitar",), ("guitar",), ("guitar",)),
    Concept("organ", "org", ("Organ",)),
    Concept("piano", "pia", ("Piano",), ("piano",)),
    Concept("saxophone", "sax", ("Saxophone",)),
    Concept("trumpet", "tru", ("Trumpet",)),
    Concept("violin", "vio", ("Violin, fiddle",), ("violin",)),
    Concept("voice", "voi", ("Singing",), ("singing", "vocals", "vocal", "voice")),
)
assert tuple(c.irmas for c in CONCEPTS) == IRMAS_CODES
assert tuple(c.name for c in CONCEPTS) == IRMAS_NAMES


def find_concepts(query: str) -> list[Concept]:
    """Every concept one of whose names is ``query`` (case-insensitive): several for a name two
    concepts share (MTT's ``guitar`` is both guitars)."""
    wanted = query.strip().lower()
    return [c for c in CONCEPTS if wanted in (n.lower() for n in c.names())]


def find_concept(query: str) -> Concept | None:
    """The first concept one of whose names is ``query`` (case-insensitive), or None."""
    found = find_concepts(query)
    return found[0] if found else None


def concept_indices(concept: Concept, class_names: Sequence[str],
                    class_codes: Sequence[str] = ()) -> list[int]:
    """A model's class indices for ``concept``, in the order of the concept's names (the most
    specific first); empty when the model has no class for it."""
    lowered = [n.lower() for n in class_names]
    codes = [c.lower() for c in class_codes]
    found: list[int] = []
    for name in concept.names():
        key = name.lower()
        for table in (lowered, codes):
            if key in table and table.index(key) not in found:
                found.append(table.index(key))
    return found


def concept_of_class(class_name: str, class_code: str = "") -> Concept | None:
    """The concept a model's class belongs to (by its name or code), or None."""
    return (find_concept(class_code) if class_code else None) or find_concept(class_name)


def comparable_indices(class_names: Sequence[str], class_codes: Sequence[str] = ()) -> list[int]:
    """Every class of a model that some concept maps to: the classes a judge ranks a target
    among (a rank among 521 AudioSet classes would mostly measure "Music" and "Speech")."""
    found: list[int] = []
    for concept in CONCEPTS:
        for index in concept_indices(concept, class_names, class_codes):
            if index not in found:
                found.append(index)
    return sorted(found)
