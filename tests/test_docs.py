"""The README stays a user's page, and the documentation stands on its own.

* README.md is at most 300 lines and names the test command CI runs (`.ci/run`).
* Every relative link in README.md and docs/*.md points to a file of this repository.
* No doc, docstring, test or benchmark cites the notes outside the repository that users never
  see (the research notes the project was built from).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|#)", re.IGNORECASE)  # http:, https:, mailto:, #anchor


def test_readme_is_at_most_300_lines():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines; move reference material to docs/"


def test_readme_names_the_ci_test_command():
    assert "./scripts/test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^\./scripts/test\b", (ROOT / "README.md").read_text(encoding="utf-8"), re.MULTILINE)


def relative_links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)  # code blocks hold no links
    return [target for target in LINK.findall(text) if not EXTERNAL.match(target)]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(doc):
    missing = [t for t in relative_links(doc) if not (doc.parent / t.split("#", 1)[0]).exists()]
    assert not missing, f"{doc.relative_to(ROOT)} links to files that do not exist: {missing}"


def test_links_are_found():
    # the checker above would pass vacuously if the pattern stopped matching
    assert "docs/architecture.md" in relative_links(ROOT / "README.md")


def test_nothing_cites_notes_outside_the_repository():
    names = ["rem-method", "rem-audit", "style-and-speed"]
    cited = re.compile("|".join(re.escape(n + ".md") for n in names) + r"|baselines\.md §|shared" + "/docs")
    files = [*DOCS, *ROOT.glob("remcli/**/*.py"), *ROOT.glob("tests/*.py"), *ROOT.glob("benchmarks/*.py"), *ROOT.glob("benchmarks/*.sh")]
    hits = [f"{f.relative_to(ROOT)}:{n}" for f in files for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1) if cited.search(line)]
    assert not hits, f"cite a file of this repository or explain in place: {hits}"
