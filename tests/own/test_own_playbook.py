"""Each step of the assignment, judged on the --playbook given (make own PLAYBOOK=...).

A failing test names the step and says, in the grader's words, what was
missing; the play's log is in the path the message gives.
"""

from __future__ import annotations

import pytest

from dcgan_harness.grade.rubric import load_rubric

STEPS = {rule.name: rule.id for rule in load_rubric().checks}
ASSIGNMENT_STEPS = ("install", "clone", "build", "run", "fetch")


def check_of(own_grading, step: str) -> dict:
    tests = {STEPS[test["name"]]: test for test in own_grading["results"]["tests"] if test["name"] in STEPS}
    assert step in tests, f"the grader reported no {step} check"
    return tests[step]


def test_the_playbook_passes_the_static_checks(own_grading):
    check = check_of(own_grading, "static")
    assert check["score"] == check["max_score"], f"static checks: {check['output']}"


@pytest.mark.parametrize("step", ASSIGNMENT_STEPS)
def test_the_step_is_done_on_the_vm(own_grading, step):
    check = check_of(own_grading, step)
    assert check["score"] == check["max_score"], f"{step}: {check['output']} (play log: {own_grading['log']})"
