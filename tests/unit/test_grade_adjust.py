"""The late penalty and the teaching staff's overrides, in the rubric, the
overrides file and the scores of every format. No VM: the class's stages
are an earlier grading made here."""

from __future__ import annotations

import csv
import json

import pytest
from gitclass import DEADLINE, assert_secret_nowhere, fake_earlier_grading, make_class

from dcgan_harness.grade import command, reuse
from dcgan_harness.grade.adjust import apply_late_penalty, apply_overrides, read_overrides
from dcgan_harness.grade.repos import GRADE_LATEST, RepoOptions, find_submissions, load_template, parse_deadline
from dcgan_harness.grade.results import FAILED, PASSED, CheckResult, SubmissionResult
from dcgan_harness.grade.rubric import RubricError, load_rubric
from dcgan_harness.grade.submission import SubmissionError
from dcgan_harness.localrun import OFFLINE_APP, default_mnist_dir

LATE_RUBRIC = (
    "checks: {static: 10, install: 15, clone: 15, build: 20, run: 25, fetch: 15, files: 0, credentials: 0}\n"
    "late: {penalty_per_day: 10%, max_days: 5}\n"
)


@pytest.fixture(autouse=True)
def no_docker(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/dcgan-test-docker.sock")


def result_of(points: dict[str, tuple[float, float]]) -> SubmissionResult:
    result = SubmissionResult("ana", "ana")
    result.checks = [CheckResult(i, i, s, m, PASSED if s == m else FAILED, []) for i, (s, m) in points.items()]
    return result


# --- The rubric's late policy --------------------------------------------------------------


def test_the_rubric_reads_the_late_policy(tmp_path):
    path = tmp_path / "rubric.yaml"
    path.write_text(LATE_RUBRIC)
    late = load_rubric(path).late
    assert (late.penalty_per_day, late.max_days) == (0.1, 5)
    assert load_rubric().late is None


@pytest.mark.parametrize(
    "late, message",
    [
        ("{penalty_per_day: 10, max_days: 5}", "not a percentage"),
        ("{penalty_per_day: 150%, max_days: 5}", "not a percentage"),
        ("{penalty_per_day: 10%}", "needs penalty_per_day and max_days"),
        ("{penalty_per_day: 10%, max_days: 0}", "late.max_days must be"),
    ],
)
def test_a_bad_late_policy_is_a_one_line_error(tmp_path, late, message):
    path = tmp_path / "rubric.yaml"
    path.write_text(f"checks: {{run: 25}}\nlate: {late}\n")
    with pytest.raises(RubricError, match=message) as caught:
        load_rubric(path)
    assert "\n" not in str(caught.value)


def test_the_penalty_is_a_share_of_the_points_earned_per_started_day(tmp_path):
    path = tmp_path / "rubric.yaml"
    path.write_text(LATE_RUBRIC)
    rubric = load_rubric(path)
    result = result_of({"run": (25, 25), "fetch": (15, 15)})
    apply_late_penalty(result, rubric, 2)
    assert result.check("late").score == -8 and result.score == 32 and result.max_score == 40
    untouched = result_of({"run": (25, 25)})
    apply_late_penalty(untouched, rubric, 0)
    assert untouched.check("late") is None


# --- Overrides -----------------------------------------------------------------------------


def test_an_override_sets_one_check_and_says_why(tmp_path):
    path = tmp_path / "overrides.csv"
    path.write_text('student,check,points,reason\nana,fetch,15,"fetched by hand in the lab, shown to the TA"\nana,late,0,medical leave\n')
    overrides = read_overrides(path, load_rubric())
    result = result_of({"run": (25, 25), "fetch": (0, 15), "late": (-4, 0)})
    apply_overrides(result, overrides)
    assert result.check("fetch").score == 15 and result.check("fetch").outcome == PASSED
    assert "override by the teaching staff: 15/15 points instead of 0: fetched by hand in the lab, shown to the TA" in result.check("fetch").output
    assert result.check("late").score == 0 and result.score == 40


@pytest.mark.parametrize(
    "row, message",
    [
        ("ana,deploy,5,x", "no check 'deploy'"),
        ("ana,fetch,20,x", "worth 0 to 15 points"),
        ("ana,fetch,lots,x", "not a number"),
        ("ana,late,5,x", "0 or negative"),
        ("ana,fetch,5,", "four cells"),
        ("ana,fetch,5,x\nANA,fetch,4,y", "overridden twice"),
    ],
)
def test_a_bad_override_is_a_one_line_error_naming_the_line(tmp_path, row, message):
    path = tmp_path / "overrides.csv"
    path.write_text(f"student,check,points,reason\n{row}\n")
    with pytest.raises(SubmissionError, match=message) as caught:
        read_overrides(path, load_rubric())
    assert "\n" not in str(caught.value) and f"{path}:" in str(caught.value)


# --- Through the command -------------------------------------------------------------------


def test_late_penalty_and_overrides_reach_every_format(tmp_path, capsys):
    course = make_class(tmp_path / "course")
    rubric_path = tmp_path / "rubric.yaml"
    rubric_path.write_text(LATE_RUBRIC)
    rubric = load_rubric(rubric_path)
    work = tmp_path / "work"
    work.mkdir()
    options = RepoOptions(work, parse_deadline(DEADLINE), GRADE_LATEST, 5, load_template(str(course.template), work))
    out = tmp_path / "grades"
    context = reuse.Context(rubric, "fast", 900.0, reuse.offline_app_commit(OFFLINE_APP, default_mnist_dir(), "fast"))
    fake_earlier_grading(out, find_submissions([], course.roster, options), context, failing=("fetch",))
    overrides = tmp_path / "overrides.csv"
    overrides.write_text("student,check,points,reason\nana,fetch,15,fetched by hand in the lab\nnobody,run,0,not in this class\n")
    args = ["--out", str(out), "--rubric", str(rubric_path), "--roster", str(course.roster), "--deadline", DEADLINE,
            "--late-policy", "grade-latest", "--template", str(course.template), "--overrides", str(overrides)]  # fmt: skip
    assert command.main(args) == 0
    captured = capsys.readouterr()
    assert "--overrides line 3: no submission named nobody" in captured.err

    ana = json.loads((out / "ana" / "results.json").read_text())
    tests = {test["name"]: test for test in ana["tests"]}
    # 85 earned at the latest commit, a day late: 10% off (8.5), then the override adds the fetch's 15.
    assert tests["Late: 1 day(s) after the deadline"]["score"] == -8.5
    assert "fetched by hand in the lab" in tests["fetch"]["output"]
    assert ana["score"] == 91.5 == sum(test["score"] for test in ana["tests"])
    assert ana["extra_data"]["days_late"] == 1 and ana["extra_data"]["graded_commit"] == course.commits["ana:late"]
    with open(out / "grades.csv", newline="") as handle:
        rows = {row["submission"]: row for row in csv.DictReader(handle)}
    assert rows["ana"]["score"] == "91.5" and rows["ana"]["graded_commit"] == course.commits["ana:late"]
    assert rows["ana"]["late"].startswith(course.commits["ana:late"][:12])
    assert rows["bruno"]["score"] == "85" and rows["bruno"]["leaked_credentials"] == "3"
    assert_secret_nowhere(out, captured.out, captured.err)


def test_grade_latest_needs_a_deadline(tmp_path, capsys):
    (tmp_path / "x.yaml").write_text("- hosts: cloud\n")
    assert command.main(["--out", str(tmp_path / "out"), "--late-policy", "grade-latest", str(tmp_path / "x.yaml")]) == 2
    err = capsys.readouterr().err
    assert "pass --deadline too" in err and len(err.strip().splitlines()) == 1
