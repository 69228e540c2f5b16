"""screenshots/ holds one SVG per screen named in scripts/screenshots.py, and the README shows each.

Cheap on purpose (no rendering): regenerate with ``python scripts/screenshots.py``.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _screens() -> dict[str, str]:
    spec = importlib.util.spec_from_file_location("finetui_screenshots", ROOT / "scripts" / "screenshots.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # imports nothing heavy at module level
    return mod.SCREENS


def test_a_screenshot_for_every_screen_and_the_readme_shows_them():
    screens = _screens()
    # every wizard step and both dashboards
    for must in ("model", "data", "trainer", "hyperparameters", "launch", "monitor", "runs"):
        assert must in screens
    files = {p.stem for p in (ROOT / "screenshots").glob("*.svg")}
    assert files == set(screens), "run: python scripts/screenshots.py"
    for name in screens:
        svg = (ROOT / "screenshots" / f"{name}.svg").read_text(encoding="utf-8").replace("&#160;", " ")
        assert svg.lstrip().startswith("<svg") and f"finetui — {name}" in svg
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    shown = set(re.findall(r"\(screenshots/([\w-]+)\.svg\)", readme))
    assert shown == set(screens)
