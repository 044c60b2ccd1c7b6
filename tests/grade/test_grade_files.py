"""The grader's parts that need no VM: finding submissions, the rubric, the
formats and their merge, reading a play's failure. Fast; part of `make unit`'s
neighbourhood, run with the grade layer."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
import zipfile

import pytest

from dcgan_harness.grade import command
from dcgan_harness.grade.formats import ClassTable, GradescopeJson, GradesCsv, JUnitXml
from dcgan_harness.grade.results import ERROR, FAILED, PASSED, CheckResult, SubmissionResult
from dcgan_harness.grade.rubric import CHECK_IDS, DEFAULT_RUBRIC, RubricError, load_rubric
from dcgan_harness.grade.run import first_failure, upstream_redirect
from dcgan_harness.grade.submission import SubmissionError, discover, parse_shard, shard

PLAYBOOK = b"- hosts: cloud\n  tasks: []\n"


# --- Submissions ------------------------------------------------------------------------


def test_a_file_a_folder_and_archives_are_submissions_named_after_themselves(tmp_path):
    (tmp_path / "alice.yaml").write_bytes(PLAYBOOK)
    (tmp_path / "bob").mkdir()
    (tmp_path / "bob" / "configure.yaml").write_bytes(PLAYBOOK)
    with zipfile.ZipFile(tmp_path / "carol.zip", "w") as bundle:
        bundle.writestr("carol/configure.yaml", PLAYBOOK)
        bundle.writestr("__MACOSX/carol/._configure.yaml", b"junk")
    with tarfile.open(tmp_path / "dave.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("configure.yaml")
        info.size = len(PLAYBOOK)
        tar.addfile(info, io.BytesIO(PLAYBOOK))
    found = discover([tmp_path])
    assert [(s.name, s.playbook) for s in found] == [
        ("alice", PLAYBOOK), ("bob", PLAYBOOK), ("carol", PLAYBOOK), ("dave", PLAYBOOK)
    ]  # fmt: skip


def test_only_configure_yaml_is_read_from_a_submission(tmp_path):
    folder = tmp_path / "eve"
    (folder / "filter_plugins").mkdir(parents=True)
    (folder / "configure.yaml").write_bytes(PLAYBOOK)
    (folder / "ansible.cfg").write_text("[defaults]\n")
    (folder / "filter_plugins" / "evil.py").write_text("raise SystemExit\n")
    [submission] = discover([folder])
    assert submission.playbook == PLAYBOOK and submission.name == "eve"


def test_a_submission_without_configure_yaml_is_graded_with_the_reason(tmp_path):
    (tmp_path / "frank").mkdir()
    with zipfile.ZipFile(tmp_path / "grace.zip", "w") as bundle:
        bundle.writestr("playbook.yml", PLAYBOOK)
    (tmp_path / "heidi.zip").write_bytes(b"not a zip")
    found = {s.name: s for s in discover([tmp_path])}
    assert found["frank"].playbook is None and "no configure.yaml" in found["frank"].problem
    assert found["grace"].playbook is None and "no configure.yaml inside grace.zip" == found["grace"].problem
    assert found["heidi"].playbook is None and "cannot be opened" in found["heidi"].problem


def test_a_configure_yaml_named_directly_takes_its_folders_name(tmp_path):
    (tmp_path / "ivan").mkdir()
    (tmp_path / "ivan" / "configure.yaml").write_bytes(PLAYBOOK)
    assert [s.name for s in discover([tmp_path / "ivan" / "configure.yaml"])] == ["ivan"]


def test_names_stay_unique(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        (tmp_path / folder / "x.yaml").write_bytes(PLAYBOOK)
    assert [s.name for s in discover([tmp_path / "a", tmp_path / "b"])] == ["x", "x-2"]


def test_a_missing_path_is_a_one_line_error(tmp_path):
    with pytest.raises(SubmissionError, match="no such file or folder"):
        discover([tmp_path / "nope"])


def test_shards_split_a_class_without_overlap():
    items = list(range(10))
    parts = [shard(items, k, 3) for k in (1, 2, 3)]
    assert parts == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert parse_shard("2/3") == (2, 3)
    for bad in ("0/3", "4/3", "x", "1-3"):
        with pytest.raises(SubmissionError, match="K/N"):
            parse_shard(bad)


# --- Rubric -------------------------------------------------------------------------


def test_the_default_rubric_scores_the_assignments_steps_out_of_100():
    rubric = load_rubric()
    assert rubric.check_ids == list(CHECK_IDS)
    assert sum(rule.points for rule in rubric.checks) == 100
    assert (rubric.epochs, rubric.world_size, rubric.batch_size, rubric.image) == (1, 1, None, "dist_dcgan")


@pytest.mark.parametrize(
    "text, message",
    [
        ("checks: {install: 10, deploy: 5}\n", "unknown check 'deploy'"),
        ("checks: {install: -1}\n", "needs 'points:'"),
        ("checks: [install]\n", "needs a 'checks:' mapping"),
        ("checks: {install: 1}\nexpect: {epochs: 0}\n", "expect.epochs must be"),
        ("checks: {install: 1}\nvisibility: secret\n", "visibility 'secret'"),
        ("checks: {install: [1\n", "not valid YAML"),
    ],
)
def test_a_bad_rubric_is_a_one_line_error_naming_the_key(tmp_path, text, message):
    path = tmp_path / "rubric.yaml"
    path.write_text(text)
    with pytest.raises(RubricError, match=message) as caught:
        load_rubric(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_a_rubric_can_drop_checks_and_change_points(tmp_path):
    path = tmp_path / "rubric.yaml"
    path.write_text("checks:\n  fetch: 50\n  run: {name: Trained, points: 50}\nexpect: {batch_size: 128}\n")
    rubric = load_rubric(path)
    assert rubric.check_ids == ["run", "fetch"] and rubric.rule("run").name == "Trained" and rubric.batch_size == 128


# --- Formats ------------------------------------------------------------------------


def sample_results() -> list[SubmissionResult]:
    good = SubmissionResult("good", "good.yaml", seconds=61.2)
    good.checks = [CheckResult("install", "Install", 15, 15, PASSED, ["ok"]), CheckResult("run", "Run", 25, 25, PASSED)]
    bad = SubmissionResult("bad", "bad.yaml", seconds=3.0, crash="run: boom")
    bad.checks = [CheckResult("install", "Install", 0, 15, FAILED, ["no docker"]), CheckResult("run", "Run", 0, 25, ERROR)]
    return [good, bad]


def test_gradescope_json_holds_every_check():
    document = json.loads(GradescopeJson().render(sample_results()[1], "hidden"))
    assert document["score"] == 0 and document["execution_time"] == 3
    assert [t["name"] for t in document["tests"]] == ["Install", "Run"]
    assert document["tests"][0] == {
        "name": "Install", "score": 0, "max_score": 15, "status": "failed", "output": "no docker", "visibility": "hidden"
    }  # fmt: skip
    assert "grading failed: run: boom" in document["output"]


def test_csv_junit_and_table_agree_on_the_scores():
    results = sample_results()
    rows = list(csv.DictReader(io.StringIO(GradesCsv().render(results, ["install", "run"]))))
    assert rows == [
        {"submission": "good", "score": "40", "max_score": "40", "install": "15", "run": "25", "seconds": "61"},
        {"submission": "bad", "score": "0", "max_score": "40", "install": "0", "run": "0", "seconds": "3"},
    ]
    suites = {s.get("name"): s for s in ET.fromstring(JUnitXml().render(results).split("\n", 1)[1]).iter("testsuite")}
    assert (suites["good"].get("failures"), suites["bad"].get("failures"), suites["bad"].get("errors")) == ("0", "1", "1")
    table = ClassTable().render(results, ["install", "run"]).splitlines()
    assert table[1].split() == ["good", "15", "25", "40/40", "61"]


def test_merge_joins_shards_and_refuses_different_rubrics(tmp_path, capsys):
    good, bad = sample_results()
    for name, results in (("one", [good]), ("two", [bad])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "grades.csv").write_text(GradesCsv().render(results, ["install", "run"]))
        (tmp_path / name / "junit.xml").write_text(JUnitXml().render(results))
    out = tmp_path / "merged"
    assert command.main(["merge", str(tmp_path / "one"), str(tmp_path / "two"), "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "grades.csv")))
    assert [row["submission"] for row in rows] == ["bad", "good"]
    assert sorted(s.get("name") for s in ET.parse(out / "junit.xml").getroot().iter("testsuite")) == ["bad", "good"]
    (tmp_path / "two" / "grades.csv").write_text(GradesCsv().render([bad], ["install"]))
    assert command.main(["merge", str(tmp_path / "one"), str(tmp_path / "two"), "--out", str(out)]) == 2
    assert "columns differ" in capsys.readouterr().err


def test_merge_of_a_folder_without_grades_is_a_one_line_error(tmp_path, capsys):
    assert command.main(["merge", str(tmp_path)]) == 2
    assert "has no grades.csv and junit.xml" in capsys.readouterr().err


# --- Reading the play ------------------------------------------------------------------


def test_first_failure_skips_ignored_errors_and_names_the_task():
    log = "\n".join([
        "TASK [Try something] ****",
        'fatal: [compute01]: FAILED! => {"msg": "ignored"}',
        "...ignoring",
        "TASK [Install Docker] ****",
        'fatal: [compute01]: FAILED! => {"changed": false, "msg": "No package matching \'x\' is available"}',
        "PLAY RECAP ****",
    ])  # fmt: skip
    assert first_failure(log) == "task 'Install Docker': No package matching 'x' is available"
    assert first_failure("TASK [a] ****\nok: [compute01]\n") == ""


def test_first_failure_of_a_command_quotes_what_the_command_said_last():
    detail = {"msg": "non-zero return code", "rc": 1, "stdout": "", "stderr": "Step 1/3 : FROM x\nno such host\n"}
    log = f"TASK [Build the image] ****\nfatal: [compute01]: FAILED! => {json.dumps(detail)}\n"
    assert first_failure(log) == "task 'Build the image': non-zero return code (exit 1): no such host"


def test_upstream_urls_are_redirected_to_the_served_copy_in_every_spelling():
    config = upstream_redirect("git://172.17.0.3/Distributed-DCGAN.git")
    assert config.startswith('[url "git://172.17.0.3/"]\n')
    for prefix in ("https://github.com/otavioon/", "git@github.com:otavioon/", "http://github.com/otavioon/"):
        assert f"\tinsteadOf = {prefix}\n" in config


def test_git_rewrites_upstreams_url_with_that_config(tmp_path):
    """The redirect as git itself applies it, with and without the .git suffix."""
    config = tmp_path / "gitconfig"
    config.write_text(upstream_redirect("git://10.0.0.9/Distributed-DCGAN.git"))
    for url, expected in (
        ("https://github.com/otavioon/Distributed-DCGAN.git", "git://10.0.0.9/Distributed-DCGAN.git"),
        ("https://github.com/otavioon/Distributed-DCGAN", "git://10.0.0.9/Distributed-DCGAN"),
    ):
        proc = subprocess.run(
            ["git", "ls-remote", "--get-url", url],
            env={"GIT_CONFIG_GLOBAL": str(config), "GIT_CONFIG_NOSYSTEM": "1", "PATH": "/usr/bin:/bin"},
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert proc.stdout.strip() == expected


# --- Command line -------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["--jobs", "0", "x.yaml"], "--jobs must be at least 1"),
        (["--timeout", "0", "x.yaml"], "--timeout must be"),
        (["--shard", "3/2", "x.yaml"], "--shard '3/2'"),
        (["--rubric", "/nonexistent/rubric.yaml", "x.yaml"], "cannot read it"),
        (["--app-dir", "/nonexistent", "x.yaml"], "has no Dockerfile"),
        (["/nonexistent/submission.yaml"], "no such file or folder"),
    ],
)
def test_bad_grade_arguments_fail_in_one_line_before_any_vm(tmp_path, args, message):
    (tmp_path / "x.yaml").write_bytes(PLAYBOOK)
    proc = subprocess.run(
        [sys.executable, "-m", "dcgan_harness", "grade", "--out", str(tmp_path / "out"), *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_default_rubric_ships_with_the_package():
    assert DEFAULT_RUBRIC.is_file()
