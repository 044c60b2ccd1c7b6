"""A class collected the course's way, graded end to end on VMs: students'
repositories at the deadline against the course's template, a credential
committed and deleted, a repository that cannot be cloned, and the class
report; the secret appears in no file the grader writes."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))

from gitclass import DEADLINE, assert_secret_nowhere, make_class  # noqa: E402
from grade_helpers import run_grader  # noqa: E402


def test_a_roster_at_the_deadline_is_graded_with_the_courses_rules(tmp_path, canary):
    secret, home = canary
    course = make_class(tmp_path / "course")
    out = tmp_path / "grades"
    graded = run_grader(
        ["--jobs", "2", "--roster", str(course.roster), "--deadline", DEADLINE, "--template", str(course.template)],
        home, secret, out,
    )
    assert graded.returncode == 0, graded.stderr[-3000:]
    ana = graded.results("ana")["extra_data"]
    assert ana["graded_commit"] == course.commits["ana:v2"]
    assert [late["sha"] for late in ana["late"]] == [course.commits["ana:late"]]
    assert graded.results("bruno")["extra_data"]["leaked_credentials"] > 0
    carla = next(t for t in graded.results("carla")["tests"] if "changed" in t["name"].lower())
    assert "notes.txt" in carla["output"]
    rows = {row["submission"]: row for row in csv.DictReader((out / "grades.csv").open())}
    assert sorted(rows) == ["ana", "bruno", "carla", "dani"]
    assert rows["ana"]["graded_commit"] == course.commits["ana:v2"]
    assert rows["ana"]["late"].startswith(course.commits["ana:late"][:12])
    assert int(rows["bruno"]["leaked_credentials"]) > 0 and int(rows["ana"]["leaked_credentials"]) == 0
    assert "cannot read the repository" in graded.results("dani")["output"] + str(graded.results("dani")["tests"])
    page = (out / "index.html").read_text()
    assert all(name in page for name in ("ana", "bruno", "carla", "dani"))
    assert_secret_nowhere(out, graded.stdout, graded.stderr)
