"""The documentation site builds in strict mode (no broken link, no page outside the
nav), its reference pages are what the code generates, and no page cites a file a user
does not have."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_reference_pages_match_the_code() -> None:
    res = subprocess.run([sys.executable, "docs/make_reference.py", "--check"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d",
                          str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    assert "WARNING" not in res.stderr, res.stderr
    site = tmp_path / "site"
    for page in ("index.html", "planners.html", "engineers.html", "operators.html",
                 "analysts.html", "reference/cli.html", "reference/api.html",
                 "reference/scenario.html", "sources.html"):
        assert (site / page).stat().st_size > 2_000, page
    html = (site / "index.html").read_text(encoding="utf-8")
    assert "cdnjs" not in html and "googleapis" not in html  # offline


def test_no_page_cites_the_developers_own_files() -> None:
    pages = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), ROOT / "results/README.md"]
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert "../shared" not in text and "DOMAIN.md" not in text, page
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 300
