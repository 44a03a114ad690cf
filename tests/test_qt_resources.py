"""scripts/data/qt_resources.py: files come out of a Qt resource as they went in."""

from __future__ import annotations

import pytest

from scripts.data.qt_resources import ResourceError, read_qt_resources
from tests.qt_resource_writer import write_qt_resources

FILES = {
    "/gcompris/src/activities/instruments/resource/clarinet.ogg": b"OggS clarinet" * 50,
    "/gcompris/src/activities/instruments/resource/README": "café notes".encode(),
    "/gcompris/src/core/intro.ogg": b"OggS intro",
    "/top.txt": b"",
}


@pytest.mark.parametrize("version", [1, 2, 3])
def test_every_file_comes_back_by_its_path(version):
    packed = write_qt_resources(FILES, version=version,
                                compress=("/gcompris/src/activities/instruments/resource/"
                                          "clarinet.ogg",))
    assert read_qt_resources(packed) == FILES


@pytest.mark.parametrize("damage, message", [
    (lambda b: b"RIFF" + b[4:], "no 'qres' magic"),
    (lambda b: b[:4] + b"\0\0\0\x09" + b[8:], "version 9 is not known"),
    (lambda b: b[:10], "cut short"),
    (lambda b: b[:-40], "damaged Qt resource|runs past the end"),
])
def test_damage_is_a_resource_error(damage, message):
    packed = write_qt_resources(FILES)
    with pytest.raises(ResourceError, match=message):
        read_qt_resources(damage(packed))
