"""The playbook rules: the playbook under test passes them, and every broken
variant in fixtures/broken/ makes exactly the rule it breaks fire at its line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from dcgan_harness import rules

BROKEN = sorted((Path(__file__).parent / "fixtures" / "broken").glob("*.yaml"))
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


def test_cli_names_a_missing_file(tmp_path):
    result = run_cli(str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "no such file" in result.stderr and "Traceback" not in result.stderr


def test_cli_passes_the_reference_fixture(fixtures_dir):
    result = run_cli(str(fixtures_dir / "good.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
