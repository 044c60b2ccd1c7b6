"""The rules never hang on a hostile playbook: a tower of ** in a condition
and a YAML alias bomb each end in one finding or one error, at once. The
bound is a hang guard two orders of magnitude above the measured time
(milliseconds): without the limits both take minutes to hours."""

from __future__ import annotations

import time

import pytest

from dcgan_harness import rules

HANG_GUARD_S = 1.0
GOOD_HEAD = """\
- name: Deploy the DCGAN
  hosts: cloud
  vars:
{vars}
  tasks:
    - name: Install git
      become: true
      ansible.builtin.apt:
        name: git
      when: {when}
"""


def alias_bomb(levels: int = 9, width: int = 10) -> str:
    """Each level aliases the one before it `width` times: width ** levels values once expanded."""
    lines = ["    a0: &a0 [" + ", ".join(["x"] * width) + "]"]
    for level in range(1, levels + 1):
        lines.append(f"    a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * width) + "]")
    return "\n".join(lines)


def timed(function, *args):
    started = time.monotonic()
    try:
        return function(*args), time.monotonic() - started
    except rules.PlaybookError as error:
        return error, time.monotonic() - started


def test_a_tower_of_powers_in_a_condition_is_one_finding_at_once():
    # Five levels took 15 s of the rules' time before the limit, six take minutes.
    tower = "(((((2 ** 63) ** 63) ** 63) ** 63) ** 63) ** 63 > 1"
    data = rules.parse_playbook(GOOD_HEAD.format(vars="    x: 1", when=f'"{tower}"'))
    findings, seconds = timed(rules.check_playbook, data)
    assert seconds < HANG_GUARD_S, f"{seconds:.2f}s"
    too_large = [finding for finding in findings if "too large to evaluate" in finding.message]
    assert [(finding.rule, finding.line) for finding in too_large] == [("task-structure", 6)]


def test_a_yaml_alias_bomb_in_unused_vars_is_one_error_at_once():
    text = GOOD_HEAD.format(vars=alias_bomb(), when="true")
    error, seconds = timed(rules.parse_playbook, text, "configure.yaml")
    assert seconds < HANG_GUARD_S, f"{seconds:.2f}s"
    assert isinstance(error, rules.PlaybookError)
    message = str(error)
    assert message.startswith("configure.yaml: its YAML aliases expand to more than") and "\n" not in message


def test_aliases_a_playbook_really_uses_still_load():
    text = GOOD_HEAD.format(vars="    base: &base [docker.io, git]\n    again: *base", when="true")
    data = rules.parse_playbook(text)
    assert data[0]["vars"]["again"] == ["docker.io", "git"]


@pytest.mark.parametrize(
    "expression",
    ["'a' * 100000", "[1] * 100000", "(2 ** 60) * (2 ** 60) * (2 ** 4000) > 1", "10 ** 65"],
)
def test_other_large_values_are_refused_not_built(expression):
    data = rules.parse_playbook(GOOD_HEAD.format(vars="    x: 1", when=f'"{expression}"'))
    findings, seconds = timed(rules.check_playbook, data)
    assert seconds < HANG_GUARD_S
    assert any(finding.rule == "task-structure" and "too large" in finding.message for finding in findings)


def test_deeply_nested_yaml_is_one_error():
    error, _ = timed(rules.parse_playbook, "[" * 5000 + "]" * 5000, "configure.yaml")
    assert isinstance(error, rules.PlaybookError) and "nests too deep" in str(error)
