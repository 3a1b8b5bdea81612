"""Headless Chromium (Debian package ``chromium``) for page checks: the rendered text and a screenshot."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path

import pytest

WINDOW = (1400, 1000)
# Time the page's scripts get (virtual time: it ends early once the page is idle) to fetch and render.
BUDGET_MS = 25000


def chromium() -> str:
    """The chromium executable; the test is skipped with the install command when it is missing."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip("headless browser missing: apt-get install chromium")
    return found


def _run(url: str, *mode: str) -> subprocess.CompletedProcess:
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--window-size={WINDOW[0]},{WINDOW[1]}", f"--virtual-time-budget={BUDGET_MS}", *mode, url]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


def page_text(url: str) -> str:
    """The visible text of the page after its scripts ran, one line per text node."""
    dom = _run(url, "--dump-dom").stdout
    dom = re.sub(r"<(script|style)[^>]*>.*?</\1>", "", dom, flags=re.S)
    text = html.unescape(re.sub(r"<[^>]+>", "\n", dom)).replace("\xa0", " ")
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def screenshot(url: str, path: Path) -> Path:
    """A PNG of the page (window size ``WINDOW``) at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _run(url, f"--screenshot={path}")
    return path
