"""Headless Chromium (Debian's `chromium`) screenshots of the HTML reports, for the tests that check they render."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def screenshot(page: Path, out: Path, width: int, height: int):
    """The page rendered at width x height as an RGB PIL image; fails the test when Chromium is missing or draws
    nothing."""
    from PIL import Image

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "Debian's chromium is needed to check the HTML report: apt-get install chromium"
    proc = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--screenshot={out}", f"--window-size={width},{height}", page.as_uri()],
                          capture_output=True, text=True, timeout=180)
    assert out.is_file(), proc.stderr[-2000:]
    return Image.open(out).convert("RGB")


def has_colour(image, want: tuple[int, int, int], tolerance: int = 30) -> bool:
    """Whether some pixel is within `tolerance` (sum of channel differences) of `want`."""
    colours = {colour for _, colour in image.getcolors(maxcolors=1 << 20)}
    return any(sum(abs(a - b) for a, b in zip(c, want)) < tolerance for c in colours)
