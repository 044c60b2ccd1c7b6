"""The documentation: the pages generated from the code are what the code
renders now, every relative link of README.md and docs/ lands on a file (and
on a heading of it, for an #anchor), and the README stays a short front door."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest
import yaml

from dcgan_harness import docs_pages

REPO = Path(__file__).resolve().parents[2]
PAGES = sorted([REPO / "README.md", *(REPO / "docs").rglob("*.md")])
README_MAX_LINES = 130

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$")
CODE_SPAN = re.compile(r"(`+)(?:.+?)\1")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks, where markdown reads links and headings."""
    lines, fence = [], None
    for line in text.splitlines():
        if match := FENCE.match(line):
            marker = match.group(1)
            if fence is None:
                fence = marker
            elif marker[0] == fence[0] and len(marker) >= len(fence):
                fence = None
            continue
        if fence is None:
            lines.append(line)
    return lines


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: its text, lowercased, punctuation dropped, spaces to dashes."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor of a markdown file; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for line in prose_lines(path.read_text()):
        if match := HEADING.match(line):
            anchor = github_anchor(match.group(1))
            count = seen.get(anchor, 0)
            found.add(anchor if count == 0 else f"{anchor}-{count}")
            seen[anchor] = count + 1
    return found


def links(path: Path) -> list[str]:
    """The link and image targets of a markdown file, outside code."""
    return [
        target
        for line in prose_lines(path.read_text())
        for target in LINK.findall(CODE_SPAN.sub("", line))
    ]


def broken_links(path: Path, root: Path = REPO) -> list[str]:
    """Each relative link of the file that lands on no file, or on no heading of it."""
    problems = []
    for target in links(path):
        if SCHEME.match(target):
            continue  # https:, mailto: ... are not this repository's files
        file_part, _, anchor = unquote(target).partition("#")
        destination = (path.parent / file_part).resolve() if file_part else path
        if not destination.is_relative_to(root.resolve()):
            problems.append(f"{target}: leaves the repository")
        elif not destination.exists():
            problems.append(f"{target}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            problems.append(f"{target}: {destination.relative_to(root.resolve())} has no heading #{anchor}")
        elif anchor and destination.suffix != ".md" and not re.fullmatch(r"L\d+(-L\d+)?", anchor):
            problems.append(f"{target}: an anchor into a file that has no headings")
    return problems


RENDERED = docs_pages.pages(REPO)


@pytest.mark.parametrize("path", sorted(RENDERED), ids=str)
def test_generated_page_is_what_the_code_renders_now(path):
    on_disk = REPO / path
    assert on_disk.is_file(), f"{path} is missing: run `make docs`"
    assert on_disk.read_text() == RENDERED[path], (
        f"{path} differs from what the code renders now: run `make docs` (and edit the source, not the page)"
    )


def test_there_is_a_page_for_every_rule_and_for_no_other():
    on_disk = {path.relative_to(REPO) for path in (REPO / docs_pages.RULES_DIR).glob("*.md")}
    generated = {path for path in RENDERED if path.parent == docs_pages.RULES_DIR}
    assert on_disk == generated, (
        f"docs/rules/ is out of step with the rule classes (no rule for {sorted(map(str, on_disk - generated))},"
        f" no page for {sorted(map(str, generated - on_disk))}): run `make docs`"
    )


def test_the_knobs_page_names_every_variable_of_the_playbook():
    variables = yaml.safe_load((REPO / "configure.yaml").read_text())[0]["vars"]
    sections = docs_pages.knob_sections((REPO / "configure.yaml").read_text())
    assert [knob.name for section in sections for knob in section.knobs] == list(variables)


def test_a_knob_keeps_the_comment_above_it_and_its_default():
    text = """\
- hosts: cloud
  vars:
    # --- Image ---
    # Seconds the build may take.
    build_async: 3600

    # Derived values; not meant to be overridden.
    image: "{{ name }}:latest"
  tasks: []
"""
    page = docs_pages.knobs_page(text)
    assert "## Image\n\n### `build_async`\n\nDefault: `3600`\n\nSeconds the build may take.\n" in page
    assert "## Derived values\n\nDerived values; not meant to be overridden.\n\n### `image`\n" in page
    assert "Default: `{{ name }}:latest`\n" in page


def test_a_rule_page_shows_the_rules_id_severity_tags_and_doc():
    rule = next(rule for rule in docs_pages.rules.RULES if rule.id == "course-launcher")
    page = RENDERED[docs_pages.RULES_DIR / "course-launcher.md"]
    assert page.startswith("# course-launcher\n")
    assert rule.doc() in page and "| severity | advisory:" in page and "`portability`" in page


@pytest.mark.parametrize("page", PAGES, ids=lambda path: str(path.relative_to(REPO)))
def test_every_relative_link_lands(page):
    assert broken_links(page) == []


def test_the_link_check_finds_a_missing_file_and_a_missing_heading(tmp_path):
    (tmp_path / "other.md").write_text("# What `make test` and `make run` need\n\n## Or: let it be, again!\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#what-make-test-and-make-run-need) [ok](other.md#or-let-it-be-again) [ok](#here)\n"
        "[gone](missing.md) [no heading](other.md#nowhere) [out](../../etc/passwd) [web](https://example.org/x)\n"
        "`[in code](ignored.md)`\n\n```\n[in a fence](ignored.md)\n```\n\n## Here\n"
    )
    assert broken_links(page, tmp_path) == [
        "missing.md: no such file",
        "other.md#nowhere: other.md has no heading #nowhere",
        "../../etc/passwd: leaves the repository",
    ]


def test_github_anchors_drop_punctuation_and_number_repeated_headings(tmp_path):
    assert github_anchor("Checking an output.txt") == "checking-an-outputtxt"
    assert github_anchor("Or let the harness create, find and delete the VM") == (
        "or-let-the-harness-create-find-and-delete-the-vm"
    )
    assert github_anchor("### `dcgan_repo_url`".lstrip("# ")) == "dcgan_repo_url"
    page = tmp_path / "page.md"
    page.write_text("# Notes\n\n## Notes\n\n## Notes\n")
    assert anchors(page) == {"notes", "notes-1", "notes-2"}


def test_the_readme_is_a_short_front_door():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines, more than {README_MAX_LINES}: move the detail into docs/"
    )
