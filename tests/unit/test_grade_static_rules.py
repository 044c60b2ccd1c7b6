"""The grader runs the playbook rules in a child process that limits itself:
the same findings as in-process, one line when the file is unreadable, and
one line when the child runs out of time, CPU or memory."""

from __future__ import annotations

from pathlib import Path

from dcgan_harness import rules
from dcgan_harness.grade import static

FIXTURES = Path(__file__).parent / "fixtures"


def test_the_child_finds_what_the_rules_find_in_process():
    path = FIXTURES / "broken" / "apt-become-other-user.yaml"
    findings, problem = static.rules_in_child(path)
    assert problem == ""
    assert findings == rules.check_file(path) and findings


def test_an_alias_bomb_is_one_line_from_the_child(tmp_path):
    levels = "\n".join(f"    a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 10) + "]" for n in range(1, 10))
    playbook = tmp_path / "configure.yaml"
    playbook.write_text("- name: p\n  hosts: cloud\n  vars:\n    a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + levels + "\n")
    findings, problem = static.rules_in_child(playbook)
    assert findings == [] and "aliases expand" in problem and "\n" not in problem


def test_a_child_that_does_not_finish_is_given_up(monkeypatch, tmp_path):
    monkeypatch.setattr(static, "RULES_TIMEOUT_S", 1)
    monkeypatch.setattr(static, "RULES_CHILD", "import time\ntime.sleep(30)\n")
    findings, problem = static.rules_in_child(tmp_path / "configure.yaml")
    assert findings == [] and problem == "the rules gave up after 1 s on this file"


def test_a_child_over_its_memory_limit_is_stopped(monkeypatch, tmp_path):
    code = static.RULES_CHILD.split("from dataclasses")[0] + "hog = bytearray(4 << 30)\n"
    monkeypatch.setattr(static, "RULES_CHILD", code)
    findings, problem = static.rules_in_child(tmp_path / "configure.yaml")
    assert findings == [] and problem.startswith("the rules stopped on this file (its CPU or memory limit")
