"""Target names: exact, code, comma part, whole word; suggestions on a miss."""

import pytest

from dreamsound.errors import TargetError
from dreamsound.models.base import resolve_class_name

NAMES = ["Speech", "Violin, fiddle", "Bowed string instrument", "Electric guitar",
         "Acoustic guitar", "Cat", "Purr"]
CODES = ["/m/09x0r", "/m/07y_7", "/m/0l14_3", "/m/02sgy", "/m/042v_gx", "/m/01yrx", "/m/02yds9"]


@pytest.mark.parametrize("query, index", [
    ("speech", 0), ("VIOLIN, FIDDLE", 1), ("violin", 1), ("fiddle", 1), ("/m/01yrx", 5),
    ("bowed", 2), ("3", 3), ("  cat ", 5),
])
def test_resolves(query, index):
    assert resolve_class_name(query, NAMES, CODES) == index


def test_ambiguous_word_lists_candidates():
    with pytest.raises(TargetError, match="several") as info:
        resolve_class_name("guitar", NAMES, CODES)
    assert "Electric guitar" in str(info.value) and "Acoustic guitar" in str(info.value)


def test_miss_suggests_close_names():
    with pytest.raises(TargetError, match="Did you mean: Violin, fiddle"):
        resolve_class_name("violn", NAMES, CODES, model="yamnet")
