"""grades/index.html in a real headless Chromium: it renders (a screenshot with
its charts' colours), lists every student, sorts and filters by its own
script from the address (#sort=score, #filter=fetch), opens offline from the
folder, and keeps what a student wrote as text.

Chromium is required, not optional: `make unit` installs Debian's as root;
elsewhere `sudo apt-get install chromium`."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy
import pytest
from gitclass import DEADLINE, fake_earlier_grading, make_class
from matplotlib import image as mpimage

from dcgan_harness.grade import command, reuse
from dcgan_harness.grade.repos import ON_TIME, RepoOptions, find_submissions, load_template, parse_deadline
from dcgan_harness.grade.rubric import load_rubric
from dcgan_harness.localrun import OFFLINE_APP, default_mnist_dir

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
HOSTILE = '<img src=x id="injected"><script>document.title="owned"</script>'
# The histogram's bars and the pass rates' bars (report_html.STYLE).
BAR_BLUE = (0x3B, 0x7D, 0xD8)
RATE_GREEN = (0x2E, 0x9E, 0x5B)


@pytest.fixture(scope="module")
def browser() -> str:
    found = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
    if found is None:
        pytest.fail("chromium is not installed: run `sudo apt-get install chromium` (make unit installs it when run as root)")
    return found


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """A class graded through the command (its VM stages an earlier grading): the index.html it wrote."""
    root = tmp_path_factory.mktemp("report")
    course = make_class(root / "course")
    work = root / "work"
    work.mkdir()
    options = RepoOptions(work, parse_deadline(DEADLINE), ON_TIME, None, load_template(str(course.template), work))
    submissions = find_submissions([], course.roster, options)
    out = root / "grades"
    context = reuse.Context(load_rubric(), "fast", 900.0, reuse.offline_app_commit(OFFLINE_APP, default_mnist_dir(), "fast"))
    feedback = {"static": ["configure.yaml:3:7: [course-task-name] a task is named " + HOSTILE, "configure.yaml:12: yamllint warning: too long"]}
    fake_earlier_grading(out, [s for s in submissions if s.name == "ana"], context, failing=("fetch",), feedback=feedback)
    fake_earlier_grading(out, [s for s in submissions if s.name == "bruno"], context, failing=())
    fake_earlier_grading(out, [s for s in submissions if s.name == "carla"], context, failing=("run", "fetch"))
    fake_earlier_grading(out, [s for s in submissions if s.name == "dani"], context)
    args = ["--out", str(out), "--roster", str(course.roster), "--deadline", DEADLINE, "--template", str(course.template)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DOCKER_HOST", "unix:///nonexistent/dcgan-test-docker.sock")  # no VM may start
        assert command.main(args) == 0
    return out / "index.html"


def chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    argv = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
            "--no-first-run", "--hide-scrollbars", *args]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def dom(browser: str, tmp_path: Path, report: Path, fragment: str = "") -> str:
    return chromium(browser, tmp_path / "profile", "--dump-dom", report.as_uri() + fragment).stdout


class Rows(HTMLParser):
    """The class table's rows as the browser left them: id, hidden, data-score, in order."""

    def __init__(self):
        super().__init__()
        self.rows: list[dict] = []
        self.table: dict = {}
        self.ids: set[str] = set()
        self.title = ""
        self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data

    def handle_endtag(self, tag):
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.ids.add(attributes.get("id") or "")
        self._in_title = tag == "title"
        if tag == "table" and attributes.get("id") == "grades":
            self.table = attributes
        if tag == "tr" and (attributes.get("id") or "").startswith("row-"):
            self.rows.append(attributes)


def rows_of(html: str) -> Rows:
    parser = Rows()
    parser.feed(html)
    return parser


def test_the_page_renders_with_its_charts(browser, tmp_path, report):
    screenshot = report.parent / "index.png"
    chromium(browser, tmp_path / "profile", f"--screenshot={screenshot}", "--window-size=1280,2000", report.as_uri())
    assert screenshot.is_file() and screenshot.stat().st_size > 30_000
    pixels = (mpimage.imread(screenshot)[:, :, :3] * 255).round().astype(int)
    colours = {tuple(p) for p in pixels.reshape(-1, 3)[::7]}
    assert len(colours) > 50  # text, charts and tables, not a blank or an error page
    for colour in (BAR_BLUE, RATE_GREEN):
        assert numpy.all(numpy.abs(pixels - numpy.array(colour)) <= 6, axis=-1).sum() > 500, f"no {colour} bars drawn"


def test_the_page_lists_every_student_with_their_feedback_and_files(browser, tmp_path, report):
    html = dom(browser, tmp_path, report)
    assert [row["id"] for row in rows_of(html).rows] == ["row-ana", "row-bruno", "row-carla", "row-dani"]
    for name in ("ana", "bruno", "carla", "dani"):
        assert f'id="s-{name}"' in html
    assert 'href="ana/log.txt"' in html and 'href="ana/configure.yaml"' in html
    assert 'href="ana/resultados/compute01/output.txt"' in html
    assert (report.parent / "ana" / "resultados" / "compute01" / "output.txt").is_file()
    assert '<span class="line">line 3</span>' in html and '<span class="line">line 12</span>' in html
    assert "AKIA****" in html and "security:" in html
    assert 'id="histogram"' in html and 'id="pass-rates"' in html and "Similar playbooks" in html


def test_what_a_student_wrote_stays_text(browser, tmp_path, report):
    html = dom(browser, tmp_path, report)
    parsed = rows_of(html)
    assert "injected" not in parsed.ids and parsed.title.startswith("Grades: ")
    assert "&lt;img src=x" in html


def test_the_page_needs_nothing_outside_its_folder(report):
    text = report.read_text()
    assert re.findall(r'\b(?:src|href)="(?:https?:)?//', text) == []
    assert "<link" not in text and "@import" not in text and "url(" not in text


@pytest.mark.parametrize("fragment, descending", [("#sort=score", False), ("#sort=-score", True)])
def test_the_table_sorts_by_score_from_the_address(browser, tmp_path, report, fragment, descending):
    parsed = rows_of(dom(browser, tmp_path, report, fragment))
    scores = [float(row["data-score"]) for row in parsed.rows]
    assert scores == sorted(scores, reverse=descending) and len(set(scores)) > 1
    assert parsed.table.get("data-sorted") == fragment.split("=")[1]  # the page's own script did it


def test_the_table_filters_on_a_failed_check(browser, tmp_path, report):
    parsed = rows_of(dom(browser, tmp_path, report, "#filter=run"))
    shown = [row["id"] for row in parsed.rows if "hidden" not in row]
    assert shown == ["row-carla", "row-dani"]  # carla's run failed; dani's repository could not be read
    leaked = rows_of(dom(browser, tmp_path, report, "#filter=leaked"))
    assert [row["id"] for row in leaked.rows if "hidden" not in row] == ["row-bruno"]
