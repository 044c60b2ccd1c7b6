"""Grading again what has not changed reuses the earlier result: no VM is
started, the result says it was reused, and its scores are the same."""

from __future__ import annotations

import time

import docker

from grade_helpers import SUBMISSIONS, run_grader

UNCHANGED = "missing-install"


def test_an_unchanged_submission_is_reused_without_a_vm(graded):
    before = graded.results(UNCHANGED)
    client = docker.from_env()
    started = int(time.time())
    again = run_grader([str(SUBMISSIONS / f"{UNCHANGED}.yaml")], graded.home, graded.canary, graded.out)
    finished = int(time.time()) + 1
    assert again.returncode == 0, again.stderr[-3000:]
    assert "no VM needed" in again.stderr, again.stderr[-3000:]
    created = [
        event for event in client.events(since=started, until=finished, decode=True,
                                         filters={"type": "container", "event": "create"})
    ]
    assert created == [], created
    after = again.results(UNCHANGED)
    assert after["score"] == before["score"]
    assert [test["score"] for test in after["tests"]] == [test["score"] for test in before["tests"]]
    assert after.get("extra_data", {}).get("reused"), after.get("extra_data")
