"""What the widget and notebook tests share: recognising the PNGs the dashboards render."""

from __future__ import annotations

import io

from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: A redraw interval long enough that only forced renders happen.
QUIET = 1e9


def assert_png(data: bytes) -> Image.Image:
    """``data`` is a complete, decodable PNG; returns the decoded image."""
    assert data[:8] == PNG_SIGNATURE
    image = Image.open(io.BytesIO(data))
    image.load()
    return image
