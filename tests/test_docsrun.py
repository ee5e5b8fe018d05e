"""What the documentation promises, run as written (a new engineer following README.md and docs/)."""

from __future__ import annotations

import pytest
from PIL import Image

from archivist.ingest.readers import read
from archivist.ingest.readers_base import ReadError


@pytest.mark.parametrize("side, said", [
    (12000, "image too large: 12000 x 12000 pixels (limit 80 megapixels: a decompression bomb?)"),
    (20000, "image too large: 400 megapixels (limit 80 megapixels: a decompression bomb?)"),
])
def test_a_decompression_bomb_is_refused_naming_its_size(tmp_path, side, said):
    # docs/documents.md, "Limits and hostile files": a 144-megapixel PNG of a few KB is refused with
    # its size. PIL's own warning (80-160 MP) cut that message short before; past 160 MP PIL refuses
    # at open and only its pixel count is known.
    bomb = tmp_path / "bomb.png"
    Image.new("1", (side, side), 1).save(bomb)
    assert bomb.stat().st_size < 100_000
    with pytest.raises(ReadError) as e:
        read(bomb)
    assert str(e.value) == said
