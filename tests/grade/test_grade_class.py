"""The test class graded end to end: scores, feedback, formats, and that no
hostile submission leaves anything on the grading machine or leaks its secrets."""

from __future__ import annotations

import csv
import glob
import json
import re
import signal
import time
import xml.etree.ElementTree as ET

import docker
import pytest

from dcgan_harness.grade.rubric import CHECK_IDS, load_rubric
from dcgan_harness.localcloud import RUN_LABEL

from grade_helpers import (
    GRADING_ID,
    HOSTILE_MARKERS,
    NEVER_ENDS,
    NEVER_ENDS_TIMEOUT_S,
    SUBMISSIONS,
    start_grader,
    unprivileged_vms_of,
    wait_for_line,
)

RUBRIC = load_rubric()
RUBRIC_TOTAL = sum(rule.points for rule in RUBRIC.checks)
STEPS = ("install", "clone", "build", "run", "fetch")
# The steps each test submission must pass; every other step must fail.
EXPECTED_PASSES = {
    "course-style": set(STEPS),
    "missing-install": {"clone"},
    "missing-clone": {"install"},
    "missing-build": {"install", "clone"},
    "missing-run": {"install", "clone", "build"},
    "missing-fetch": {"install", "clone", "build", "run"},
    "run-without-the-clone": {"install", "clone", "build"},
    "fails-at-runtime": set(),
    "packed-tarball": set(),
    # Submissions that try to break the grading rather than the sandbox
    # (test_grade_always_finishes.py); grades.csv.yaml and ana.yaml graded
    # under the names the grader gives them.
    "control-characters": set(),
    "grades.csv-2": set(),
    "ana": set(),
    "ana-2": set(),
    "ana-3": set(),
    "log-flood": set(),
    "alias-bomb": set(),
    "power-tower": set(),
    # Fakes of the steps (test_grade_evidence.py): only what was really done counts.
    "fabricated-output": {"install", "clone", "fetch"},
    "fake-engine-and-clone": set(),
    # Tries to change the other submissions' runtime (test_grade_evidence.py).
    "mirror-poison": {"install"},
    # Reports what its VM is (test_grade_isolation.py); a probe, not a solution.
    "vm-probe": set(),
}
HOSTILE = sorted(p.stem for p in SUBMISSIONS.iterdir() if p.name.startswith("hostile-")) + ["packed-plugins"]


def checks_by_id(results: dict) -> dict[str, dict]:
    names = {rule.name: rule.id for rule in RUBRIC.checks}
    return {names[test["name"]]: test for test in results["tests"]}


def passed_steps(results: dict) -> set[str]:
    tests = checks_by_id(results)
    return {step for step in STEPS if tests[step]["score"] == tests[step]["max_score"]}


def test_grading_exits_zero_whatever_the_scores(graded):
    assert graded.returncode == 0, graded.stderr[-3000:]


@pytest.mark.parametrize("name", sorted(EXPECTED_PASSES))
def test_each_step_scores_only_when_done(graded, name):
    results = graded.results(name)
    assert passed_steps(results) == EXPECTED_PASSES[name], json.dumps(results, indent=1)[:4000]


def test_complete_submission_in_the_course_style_gets_every_point(graded):
    results = graded.results("course-style")
    assert results["score"] == RUBRIC_TOTAL, json.dumps(results, indent=1)[:4000]
    tests = checks_by_id(results)
    assert "iterations" in tests["run"]["output"]
    assert "resultados/" in tests["fetch"]["output"]


def test_the_course_launcher_draws_an_advisory_without_losing_points(graded):
    static = checks_by_id(graded.results("course-style"))["static"]
    assert static["score"] == static["max_score"]
    assert "torch.distributed.launch" in static["output"] and "--local-rank" in static["output"]


def test_missing_step_feedback_says_what_is_missing(graded):
    assert "dpkg records no Docker engine installed" in checks_by_id(graded.results("missing-install"))["install"]["output"]
    assert "no git clone found" in checks_by_id(graded.results("missing-clone"))["clone"]["output"]
    assert "no image dist_dcgan:latest" in checks_by_id(graded.results("missing-build"))["build"]["output"]
    fetch = checks_by_id(graded.results("missing-fetch"))["fetch"]["output"]
    assert "no resultados/**/output.txt was fetched" in fetch


def test_a_failing_playbook_names_the_task_that_failed(graded):
    install = checks_by_id(graded.results("fails-at-runtime"))["install"]["output"]
    assert "the playbook failed: task 'Install Docker from a package name that does not exist'" in install
    assert "No package matching" in install
    assert (graded.out / "fails-at-runtime" / "log.txt").read_text().count("PLAY RECAP") == 1


def test_an_endless_playbook_is_stopped_at_the_timeout(graded_endless):
    assert graded_endless.returncode == 0, graded_endless.stderr[-3000:]
    results = graded_endless.results(NEVER_ENDS)
    assert results["score"] == checks_by_id(results)["static"]["score"]
    assert f"stopped at the {NEVER_ENDS_TIMEOUT_S}s time limit" in checks_by_id(results)["install"]["output"]
    assert results["execution_time"] < NEVER_ENDS_TIMEOUT_S + 60


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_submission_is_graded(graded, name):
    results = graded.results(name)
    assert passed_steps(results) == set()
    assert (graded.out / name / "log.txt").is_file()


def test_hostile_submissions_leave_nothing_on_the_grading_machine(graded, graded_endless):
    assert glob.glob(HOSTILE_MARKERS) == []
    assert not (graded.out.parent / "dcgan-hostile-fetch-escape").exists()
    assert not list(graded.out.parent.rglob("dcgan-hostile-*"))


def test_the_controller_cannot_reach_the_grading_machines_services(graded, host_service):
    log = (graded.out / "hostile-network" / "log.txt").read_text()
    assert "Connect to the grading machine's addresses" in log
    assert re.search(r"reached \d", log) is None  # what the task echoes after a connection
    assert host_service.peers == []


def test_hostile_lookups_ran_only_inside_the_sandbox(graded):
    log = (graded.out / "hostile-lookups" / "log.txt").read_text()
    # The pipe lookup did run, and printed the sandbox's environment, not ours.
    assert "HOME=/home/grader" in log
    assert "AWS_SECRET_ACCESS_KEY" not in log


def test_the_canary_secret_appears_in_no_output(graded, graded_endless):
    for run in (graded, graded_endless):
        assert run.canary not in run.stdout and run.canary not in run.stderr
        for path in run.out.rglob("*"):
            if path.is_file():
                assert run.canary.encode() not in path.read_bytes(), f"the canary leaked into {path}"


def test_nothing_of_the_grading_runs_is_left(graded, graded_endless):
    client = docker.from_env()
    for run in (graded, graded_endless):
        label = f"dcgan.localcloud.run={run.grading_id}"
        leftovers = [c.name for c in client.containers.list(all=True) if c.labels.get("dcgan.localcloud.run", "").startswith(run.grading_id)]
        networks = client.networks.list(filters={"label": "dcgan.localcloud.role=sandbox-net"})
        assert leftovers == [], f"containers of {label} left: {leftovers}"
        assert unprivileged_vms_of(run.grading_id) == []
        assert [n.name for n in networks if run.grading_id in n.name] == []


def test_results_json_follows_gradescopes_format(graded):
    for name in [*EXPECTED_PASSES, *HOSTILE]:
        results = graded.results(name)
        assert isinstance(results["score"], (int, float))
        assert isinstance(results["execution_time"], (int, float))
        assert isinstance(results["output"], str)
        assert [set(test) >= {"name", "score", "max_score", "output", "visibility"} for test in results["tests"]] == [True] * len(CHECK_IDS)
        assert results["score"] == sum(test["score"] for test in results["tests"])


def test_grades_csv_has_one_row_per_submission_and_a_column_per_check(graded):
    with open(graded.out / "grades.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["submission", "score", "max_score", *CHECK_IDS, "seconds"]
    assert sorted(row["submission"] for row in rows) == sorted([*EXPECTED_PASSES, *HOSTILE])
    by_name = {row["submission"]: row for row in rows}
    assert float(by_name["course-style"]["score"]) == RUBRIC_TOTAL
    assert float(by_name["missing-fetch"]["fetch"]) == 0


def test_junit_has_a_suite_per_submission_with_a_failure_per_lost_check(graded):
    root = ET.parse(graded.out / "junit.xml").getroot()
    suites = {suite.get("name"): suite for suite in root.iter("testsuite")}
    assert sorted(suites) == sorted([*EXPECTED_PASSES, *HOSTILE])
    assert suites["course-style"].get("failures") == "0"
    assert suites["missing-run"].get("failures") == "2"  # run and fetch


def test_the_class_table_is_printed(graded):
    header = graded.stdout.splitlines()[0].split()
    assert header == ["submission", *CHECK_IDS, "score", "seconds"]
    assert any(line.startswith("course-style ") and f"{RUBRIC_TOTAL:g}/{RUBRIC_TOTAL:g}" in line for line in graded.stdout.splitlines())


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_removes_every_vm_controller_and_network_of_the_run(tmp_path, canary, signum):
    """Ctrl-C, or CI's SIGTERM, while a playbook runs: exit 130, nothing of the run left behind."""
    secret, home = canary
    process = start_grader(["--timeout", "600", str(SUBMISSIONS / f"{NEVER_ENDS}.yaml")], home, secret, tmp_path / "out")
    client = docker.from_env()
    try:
        grading_id = wait_for_line(process, GRADING_ID, timeout=600).group(1)
        deadline = time.monotonic() + 300
        while not controllers_of(client, grading_id):
            assert time.monotonic() < deadline, "no controller container started within 300s"
            assert process.poll() is None, process.stderr.read()
            time.sleep(1)
        process.send_signal(signum)
        assert process.wait(timeout=120) == 130
    finally:
        if process.poll() is None:
            process.kill()
    leftovers = [c.name for c in client.containers.list(all=True) if c.labels.get(RUN_LABEL, "").startswith(grading_id)]
    assert leftovers == []
    assert unprivileged_vms_of(grading_id) == []
    assert [n.name for n in client.networks.list() if grading_id in n.name] == []


def controllers_of(client, grading_id: str) -> list:
    return [
        c for c in client.containers.list(filters={"label": "dcgan.localcloud.role=controller"})
        if c.labels.get(RUN_LABEL, "").startswith(grading_id) and not c.name.startswith("dcgan-syntax-")
    ]  # fmt: skip
