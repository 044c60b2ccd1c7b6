"""Submissions that try to break the grading of the class rather than the
sandbox: names that collide, control characters, a flood of output. Graded
with the class (the `graded` fixture); each must get a correct grade of its
own and leave every class file whole."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET

from dcgan_harness.grade.rubric import load_rubric
from dcgan_harness.localcloud.logcap import MAX_LOG_BYTES

from grade_helpers import SUBMISSIONS

RUBRIC = load_rubric()
STATIC_POINTS = RUBRIC.rule("static").points
# The folder each of the three gets, and the task its playbook fails at.
ANAS = {"ana": "ana/configure.yaml", "ana-2": "ana-2.yaml", "ana-3": "ana.yaml"}
ROBUSTNESS = ["control-characters", "grades.csv-2", *ANAS, "log-flood"]
# Raw, these would break a terminal, a line-based reader or an XML parser.
RAW = (b"\x1b", b"\x07")


def checks_by_id(results: dict) -> dict[str, dict]:
    names = {rule.name: rule.id for rule in RUBRIC.checks}
    return {names[test["name"]]: test for test in results["tests"]}


def test_each_gets_the_static_points_and_nothing_else(graded):
    for name in ROBUSTNESS:
        results = graded.results(name)
        assert results["score"] == STATIC_POINTS, (name, json.dumps(results, indent=1)[:3000])


def test_names_that_derive_alike_get_a_folder_each_with_their_own_results(graded):
    for name, source in ANAS.items():
        assert (graded.out / name / "configure.yaml").read_bytes() == (SUBMISSIONS / source).read_bytes()
        install = checks_by_id(graded.results(name))["install"]["output"]
        assert f"task 'Fail as {source}'" in install, (name, install)


def test_a_submission_named_like_the_class_file_leaves_it_a_file(graded):
    assert (graded.out / "grades.csv").is_file() and (graded.out / "junit.xml").is_file()
    assert (graded.out / "grades.csv-2" / "results.json").is_file()
    assert "task 'Fail as grades.csv.yaml'" in checks_by_id(graded.results("grades.csv-2"))["install"]["output"]


def test_control_characters_are_escaped_in_every_output(graded):
    install = checks_by_id(graded.results("control-characters"))["install"]["output"]
    assert "task 'Fail at once, in \\x1b[31mred\\x1b[0m, ringing \\x07'" in install
    for path in [graded.out / "grades.csv", graded.out / "junit.xml", *graded.out.glob("*/results.json")]:
        content = path.read_bytes()
        assert not any(raw in content for raw in RAW), path
    assert not any(raw.decode() in graded.stdout for raw in RAW)


def test_junit_parses_and_every_output_keeps_one_line_per_submission(graded):
    suites = [suite.get("name") for suite in ET.parse(graded.out / "junit.xml").getroot().iter("testsuite")]
    assert all(suites.count(name) == 1 for name in ROBUSTNESS)
    with open(graded.out / "grades.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert len({len(row) for row in rows}) == 1
    assert len(rows) == len((graded.out / "grades.csv").read_text().splitlines())
    assert [row[0] for row in rows[1:]].count("control-characters") == 1
    table = [line.split()[0] for line in graded.stdout.splitlines() if line.strip()]
    assert table.count("control-characters") == 1 and len(table) == len(rows)


def test_a_flood_of_output_leaves_a_capped_log_with_its_beginning_and_end(graded):
    log = graded.out / "log-flood" / "log.txt"
    assert log.stat().st_size <= MAX_LOG_BYTES
    text = log.read_text(errors="replace")
    # The play's lines once each, in order: its beginning, one mark, its end.
    assert text.count("dropped here") == 1, text.count("dropped here")
    head, _, tail = text.partition("dropped here")
    assert "TASK [Print 20 MB on the VM]" in head and "PLAY RECAP" not in head
    assert tail.count("PLAY RECAP") == 1 and "TASKS RECAP" in tail
    assert "ansible-playbook succeeded" in graded.results("log-flood")["output"]


# What the static stage takes at most with the rules' child process limited:
# the sandboxed syntax check dominates; the rules give up in a second.
STATIC_BOUND_S = 150


def static_seconds(results: dict) -> float:
    line = next(line for line in results["output"].splitlines() if line.startswith("static: "))
    return float(line.rsplit("(", 1)[1].rstrip("s)"))


def test_an_alias_bomb_is_one_line_of_feedback_at_once(graded):
    results = graded.results("alias-bomb")
    static = checks_by_id(results)["static"]
    assert static_seconds(results) < STATIC_BOUND_S
    bomb_lines = [line for line in static["output"].splitlines() if "aliases expand" in line]
    assert len(bomb_lines) == 1 and bomb_lines[0].startswith("playbook rules not applied:"), static["output"]
    assert results["score"] == STATIC_POINTS, json.dumps(results, indent=1)[:3000]


def test_a_tower_of_powers_is_one_finding_at_once(graded):
    results = graded.results("power-tower")
    static = checks_by_id(results)["static"]
    assert static_seconds(results) < STATIC_BOUND_S
    assert [line for line in static["output"].splitlines() if "too large to evaluate" in line], static["output"]
    assert results["score"] == STATIC_POINTS, json.dumps(results, indent=1)[:3000]
