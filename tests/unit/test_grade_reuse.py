"""Grading again only what changed: the key of a result, reusing it at the
rubric's current points, the hook the pipeline calls before a submission's
VM, and a second `grade` of an unchanged class that starts none. The
Docker engine is pointed at a socket that does not exist: anything that
tried to start a VM would fail the command."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from gitclass import DEADLINE, commit, fake_earlier_grading, make_class

from dcgan_harness.grade import command, reuse
from dcgan_harness.grade.repos import ON_TIME, RepoOptions, find_submissions, load_template, parse_deadline
from dcgan_harness.grade.results import ERROR, PARTIAL, PASSED, CheckResult, SubmissionResult
from dcgan_harness.grade.rubric import load_rubric
from dcgan_harness.grade.submission import Submission
from dcgan_harness.localrun import OFFLINE_APP, default_mnist_dir

PLAYBOOK = b"- hosts: cloud\n  tasks: []\n"
NO_ENGINE = "unix:///nonexistent/dcgan-test-docker.sock"


@pytest.fixture(autouse=True)
def no_docker(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", NO_ENGINE)


@pytest.fixture(scope="module")
def context() -> reuse.Context:
    return reuse.Context(load_rubric(), "fast", 900.0, reuse.offline_app_commit(OFFLINE_APP, default_mnist_dir(), "fast"))


def rubric_with(tmp_path: Path, text: str):
    path = tmp_path / "rubric.yaml"
    path.write_text(text)
    return load_rubric(path)


POINTS_CHANGED = """checks:
  static: {points: 10, per_finding: 2}
  install: 30
  clone: 15
  build: 20
  run: 25
  fetch: 15
"""


# --- The key -------------------------------------------------------------------------------


def test_the_key_follows_what_decides_an_outcome_and_not_the_points(tmp_path, context, monkeypatch):
    submission = Submission("ana", tmp_path / "ana.yaml", PLAYBOOK)
    first = reuse.key(submission, context)
    assert reuse.key(submission, replace(context, rubric=rubric_with(tmp_path, POINTS_CHANGED))) == first
    assert reuse.key(replace(submission, name="other", source=Path("x")), context) == first
    assert reuse.key(replace(submission, playbook=PLAYBOOK + b"\n"), context) != first
    assert reuse.key(submission, replace(context, rubric=rubric_with(tmp_path, "checks: {run: 25}\nexpect: {batch_size: 64}\n"))) != first
    assert reuse.key(submission, replace(context, app_commit="0" * 40)) != first
    assert reuse.key(submission, replace(context, mode="full")) != first
    monkeypatch.setattr(reuse, "grader_version", lambda: "a newer grader")
    assert reuse.key(submission, context) != first


def test_the_grader_version_names_the_package_the_code_and_ansible():
    version = reuse.grader_version()
    assert version.startswith("0.") and "ansible-core 2." in version


# --- Reusing -------------------------------------------------------------------------------


def test_an_earlier_result_is_reused_at_the_rubrics_current_points(tmp_path, context):
    submission = Submission("ana", tmp_path / "ana.yaml", PLAYBOOK)
    fake_earlier_grading(tmp_path, [submission], context, failing=("fetch",), findings=3)
    same = reuse.earlier_result(tmp_path / "ana", submission, context)
    assert same is not None and same.reused_from and same.score == 85
    assert [c.outcome for c in same.checks] == [PASSED] * 5 + ["failed"]
    rescored = reuse.earlier_result(tmp_path / "ana", submission, replace(context, rubric=rubric_with(tmp_path, POINTS_CHANGED)))
    assert rescored.check("install").score == 30 and rescored.check("fetch").score == 0
    # Three rule findings at 2 points each, now that per_finding counts them.
    assert (rescored.check("static").score, rescored.check("static").outcome) == (4, PARTIAL)
    assert rescored.check("clone").feedback == ["as expected"]


def test_a_changed_playbook_or_a_missing_record_is_graded_again(tmp_path, context):
    submission = Submission("ana", tmp_path / "ana.yaml", PLAYBOOK)
    fake_earlier_grading(tmp_path, [submission], context)
    assert reuse.earlier_result(tmp_path / "ana", replace(submission, playbook=PLAYBOOK + b"# edited\n"), context) is None
    assert reuse.earlier_result(tmp_path / "bruno", submission, context) is None
    (tmp_path / "ana" / reuse.RECORD).write_text("{not json")
    assert reuse.earlier_result(tmp_path / "ana", submission, context) is None


def test_a_rubric_with_a_check_the_earlier_grading_lacked_grades_again(tmp_path, context):
    submission = Submission("ana", tmp_path / "ana.yaml", PLAYBOOK)
    fewer = replace(context, rubric=rubric_with(tmp_path, "checks: {run: 25, fetch: 15}\n"))
    fake_earlier_grading(tmp_path, [submission], fewer)
    assert reuse.earlier_result(tmp_path / "ana", submission, context) is None
    fake_earlier_grading(tmp_path, [submission], context)  # every check: a rubric with fewer reuses it
    assert [c.id for c in reuse.earlier_result(tmp_path / "ana", submission, fewer).checks] == ["run", "fetch"]


def test_a_crash_or_an_undecided_check_is_never_kept(tmp_path, context):
    submission = Submission("ana", tmp_path / "ana.yaml", PLAYBOOK)
    crashed = SubmissionResult("ana", "ana.yaml", crash="run: the engine went away")
    assert not reuse.store(tmp_path, submission, crashed, context)
    undecided = SubmissionResult("ana", "ana.yaml", checks=[CheckResult("install", "Install", 0, 15, ERROR, ["no VM"])])
    assert not reuse.store(tmp_path, submission, undecided, context)
    assert not (tmp_path / reuse.RECORD).exists()


def test_the_pipeline_hook_reuses_before_any_vm_and_says_so(tmp_path, context, capsys):
    submission = Submission("ana", tmp_path / "ana.yaml", PLAYBOOK)
    fake_earlier_grading(tmp_path, [submission], context)
    run = SimpleNamespace(out_dir=tmp_path, rubric=context.rubric, mode="fast", timeout=900.0, served=SimpleNamespace(commit=context.app_commit))
    result = reuse.reuse_earlier(run, submission, 2, 5)
    assert result is not None and result.score == 85
    assert "[2/5] ana: reused" in capsys.readouterr().err
    run.served.commit = "f" * 40  # another app: grade it
    assert reuse.reuse_earlier(run, submission, 2, 5) is None


# --- A whole class, through the command ---------------------------------------------------


@pytest.fixture
def graded_once(tmp_path, context):
    """A class of repositories graded once into out: what a second `grade` finds."""
    course = make_class(tmp_path / "course")
    work = tmp_path / "work"
    work.mkdir()
    options = RepoOptions(work, parse_deadline(DEADLINE), ON_TIME, None, load_template(str(course.template), work))
    out = tmp_path / "grades"
    fake_earlier_grading(out, find_submissions([], course.roster, options), context)
    args = ["--out", str(out), "--roster", str(course.roster), "--deadline", DEADLINE, "--template", str(course.template)]
    return course, out, args


def test_a_second_grade_of_an_unchanged_class_starts_no_vm(graded_once, capsys):
    course, out, args = graded_once
    assert command.main(args) == 0
    captured = capsys.readouterr()
    assert captured.err.count(": reused: ") == 4 and "no VM needed" in captured.err
    for name in ("ana", "bruno", "carla", "dani"):
        extra = json.loads((out / name / "results.json").read_text())["extra_data"]
        assert extra["reused"] is True
    assert json.loads((out / "ana" / "results.json").read_text())["score"] == 85
    assert (out / "index.html").is_file() and (out / "similarity.csv").is_file() and (out / "junit.xml").is_file()


def test_force_grades_every_submission_again(graded_once, capsys):
    _course, out, args = graded_once
    assert command.main([*args, "--force"]) == 2  # it went for the VMs, which this test has none of
    assert "No Docker engine answers" in capsys.readouterr().err
    assert not list(out.glob(f"*/{reuse.RECORD}"))


def test_one_changed_submission_is_graded_again(graded_once, capsys):
    course, out, args = graded_once
    commit(course.repos["carla"], "Fix", "2021-05-24T13:00:00-03:00", {"configure.yaml": "- hosts: cloud\n  tasks: []\n"})
    assert command.main(args) == 2
    err = capsys.readouterr().err
    assert "carla changed since it was graded" in err and "No Docker engine answers" in err
