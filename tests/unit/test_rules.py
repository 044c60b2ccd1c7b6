"""The playbook rules: the playbook under test passes them, every broken
variant in fixtures/broken/ makes exactly the rule it breaks fire at its line,
and every variant in fixtures/good/ (a spelling that once drew a false
finding) draws none."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from dcgan_harness import rules

BROKEN = sorted((Path(__file__).parent / "fixtures" / "broken").glob("*.yaml"))
GOOD = sorted((Path(__file__).parent / "fixtures" / "good").glob("*.yaml"))
EXPECT = re.compile(r"^# expect: (.+)$", re.MULTILINE)
EXPECT_ERROR = re.compile(r"^# expect-error: (\d+):(\d+)$", re.MULTILINE)


def expected_findings(path: Path) -> set[tuple[str, int]]:
    match = EXPECT.search(path.read_text())
    pairs = (item.split("@") for item in match.group(1).split())
    return {(rule, int(line)) for rule, line in pairs}


def test_playbook_under_test_passes_every_rule(playbook_path):
    findings = rules.check_file(playbook_path)
    assert not findings, "\n".join(finding.format(playbook_path) for finding in findings)


def test_reference_fixture_passes_every_rule(fixtures_dir):
    assert rules.check_file(fixtures_dir / "good.yaml") == []


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.stem)
def test_good_variant_draws_no_finding(path):
    findings = rules.check_file(path)
    assert findings == [], "\n".join(finding.format(path) for finding in findings)


def test_there_are_good_variants():
    assert len(GOOD) >= 10


@pytest.mark.parametrize("path", [p for p in BROKEN if EXPECT.search(p.read_text())], ids=lambda p: p.stem)
def test_broken_variant_fires_its_rule_at_its_line(path):
    found = {(finding.rule, finding.line) for finding in rules.check_file(path)}
    assert found == expected_findings(path)


@pytest.mark.parametrize("path", [p for p in BROKEN if EXPECT_ERROR.search(p.read_text())], ids=lambda p: p.stem)
def test_malformed_yaml_names_file_line_and_column(path):
    line, column = EXPECT_ERROR.search(path.read_text()).groups()
    with pytest.raises(rules.PlaybookError) as error:
        rules.check_file(path)
    message = str(error.value)
    assert message.startswith(f"{path}:{line}:{column}: YAML syntax error")
    assert "\n" not in message


def test_every_rule_has_a_broken_variant():
    covered = {rule for path in BROKEN if EXPECT.search(path.read_text()) for rule, _ in expected_findings(path)}
    assert covered == set(rules.RULE_IDS), f"rules without a broken variant: {set(rules.RULE_IDS) - covered}"


def test_rule_ids_come_from_the_rule_classes():
    ids = [rule.id for rule in rules.RULES]
    assert len(ids) == len(set(ids)), "two rule classes share an id"
    assert rules.RULE_IDS == frozenset(ids)


@pytest.mark.parametrize("rule", rules.RULES, ids=lambda rule: rule.id)
def test_every_rule_has_a_severity_tags_and_a_doc(rule):
    assert rule.severity in {rules.ERROR, rules.ADVISORY}
    assert rule.tags and all(isinstance(tag, str) for tag in rule.tags)
    assert rule.doc() and not rule.doc().endswith(" ")


def test_every_finding_carries_its_rules_severity():
    """Or is advice saying that the file alone cannot settle it."""
    severity = {rule.id: rule.severity for rule in rules.RULES}
    for path in BROKEN:
        if EXPECT.search(path.read_text()):
            for finding in rules.check_file(path):
                unsure = finding.severity == rules.ADVISORY and finding.message.startswith("cannot tell")
                assert finding.severity == severity[finding.rule] or unsure, finding


def test_course_launcher_is_the_only_advisory():
    assert {rule.id for rule in rules.RULES if rule.severity == rules.ADVISORY} == {"course-launcher"}


def test_every_finding_says_how_to_fix_it():
    for path in BROKEN:
        if EXPECT.search(path.read_text()):
            for finding in rules.check_file(path):
                text = finding.format(path)
                assert f"[{finding.rule}]" in text and f":{finding.line}:" in text and "Fix: " in text
                assert finding.fix.strip() and finding.message.strip()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dcgan_harness", "check", *args], capture_output=True, text=True, timeout=60
    )


def test_cli_reports_malformed_yaml_in_one_line_without_traceback(fixtures_dir):
    result = run_cli(str(fixtures_dir / "broken" / "tabs.yaml"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert "tabs.yaml:18:1" in result.stderr


def test_cli_lists_findings_and_fails(fixtures_dir):
    result = run_cli(str(fixtures_dir / "broken" / "missing-become-apt.yaml"))
    assert result.returncode == 1
    assert "missing-become-apt.yaml:10: [become-missing]" in result.stdout


def test_cli_prints_advisories_but_passes(fixtures_dir):
    result = run_cli(str(fixtures_dir / "broken" / "course-launcher.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "course-launcher.yaml:45: [course-launcher] (advisory)" in result.stdout
    assert "--local-rank" in result.stdout and "MASTER_ADDR" in result.stdout
    assert "with 1 advisory finding(s)" in result.stdout


def test_cli_fails_when_an_error_sits_beside_an_advisory(tmp_path, fixtures_dir):
    text = (fixtures_dir / "broken" / "course-launcher.yaml").read_text()
    playbook = tmp_path / "configure.yaml"
    playbook.write_text(text.replace("      poll: 30\n", "      poll: 0\n"))
    result = run_cli(str(playbook))
    assert result.returncode == 1
    assert "[async-poll]" in result.stdout and "[course-launcher] (advisory)" in result.stdout
    assert "1 finding(s) and 1 advisory finding(s)" in result.stderr


def test_cli_lists_every_rule_with_its_severity():
    result = run_cli("--list-rules")
    assert result.returncode == 0
    listed = {line.split()[0]: line.split()[1] for line in result.stdout.splitlines()}
    assert listed == {rule.id: rule.severity for rule in rules.RULES}


def test_cli_names_a_missing_file(tmp_path):
    result = run_cli(str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "no such file" in result.stderr and "Traceback" not in result.stderr


def test_cli_passes_the_reference_fixture(fixtures_dir):
    result = run_cli(str(fixtures_dir / "good.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
