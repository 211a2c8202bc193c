"""The README stays short and every relative link in it and in docs/ leads somewhere."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
README_MAX_CHARS = 12_000
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]
# [text](target) and ![alt](target), not inside `code`; the target up to a space or the closing paren
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
INLINE_CODE = re.compile(r"`[^`\n]*`")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)


def relative_links(page: Path) -> list[str]:
    text = INLINE_CODE.sub("", FENCE.sub("", page.read_text()))
    targets = [m[1] for m in LINK.finditer(text)]
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


def test_the_readme_is_at_most_12000_characters():
    size = len(README.read_text())
    assert size <= README_MAX_CHARS, f"README.md is {size:,} characters; move detail to docs/"


def test_the_link_scan_finds_links_and_skips_code():
    assert "docs/contributing.md" in relative_links(README)
    assert relative_links(REPO / "docs" / "contributing.md")


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(REPO).as_posix() for p in PAGES])
def test_every_relative_link_resolves(page):
    broken = [t for t in relative_links(page) if not (page.parent / unquote(t.split("#", 1)[0])).exists()]
    assert not broken, f"{page.relative_to(REPO)} links to what does not exist: {broken}"
