"""Stage 1, static: yamllint, ansible-playbook --syntax-check and the playbook rules.

yamllint and the rules only read the file. The syntax check is Ansible's own
loader, which can be made to run plugins, so it runs in a controller sandbox
without any network, like the play itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from yamllint import linter
from yamllint.config import YamlLintConfig

from .. import rules
from ..localcloud import RUN_LABEL
from ..localcloud.controller import run_sandboxed
from ..localcloud.engine import remove_container
from .results import ERROR, FAILED, PARTIAL, PASSED, CheckResult
from .work import GradingRun, SubmissionWork

SYNTAX_CHECK_TIMEOUT_S = 120
# The relaxed preset: students lose nothing for style, only for real YAML problems.
YAMLLINT_CONFIG = "extends: relaxed"
# A syntax check needs an inventory of the course's shape; nothing connects to it.
SYNTAX_INVENTORY = b"cloud:\n  hosts:\n    compute01:\n      ansible_host: 192.0.2.1\n      ansible_user: ubuntu\n"
MAX_FEEDBACK_LINES = 40
# The rules read a hostile file in a child process that limits itself before
# reading it: the rules bound every template and alias they know of, and
# these limits bound what they do not.
RULES_TIMEOUT_S = 60
RULES_CPU_S = 30
RULES_MEMORY_BYTES = 1 << 30
RULES_CHILD = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_CPU, ({cpu}, {cpu}))
resource.setrlimit(resource.RLIMIT_AS, ({memory}, {memory}))
from dataclasses import asdict
from dcgan_harness import rules
try:
    print(json.dumps({{"findings": [asdict(f) for f in rules.check_file(sys.argv[1])]}}))
except rules.PlaybookError as error:
    print(json.dumps({{"error": str(error)}}))
"""


class StaticStage:
    name = "static"

    def run(self, run: GradingRun, work: SubmissionWork) -> None:
        started = time.monotonic()
        rule = run.rubric.rule(self.name)
        if work.submission.playbook is None:
            work.report(self.name, work.submission.problem, time.monotonic() - started)
            if rule:
                work.add(CheckResult(rule.id, rule.name, 0, rule.points, FAILED, [work.submission.problem]))
            return
        text = work.submission.playbook.decode("utf-8", errors="replace")
        yaml_errors, yaml_feedback = yamllint_feedback(text)
        syntax_ok, syntax_feedback = syntax_check(run, work)
        findings, finding_feedback = rule_feedback(work)
        errors = [f for f in findings if getattr(f, "severity", "error") == "error"]
        summary = (
            f"yamllint {yaml_errors} error(s), syntax-check {'passed' if syntax_ok else 'failed'}, "
            f"{len(errors)} rule finding(s), {len(findings) - len(errors)} advisory"
        )
        work.report(self.name, summary, time.monotonic() - started)
        if rule is None:
            return
        feedback = yaml_feedback + syntax_feedback + finding_feedback
        if syntax_ok is None:
            work.add(CheckResult(rule.id, rule.name, 0, rule.points, ERROR, feedback))
            return
        if not syntax_ok or yaml_errors:
            score = 0.0
        else:
            score = max(0.0, rule.points - rule.per_finding * len(errors))
        outcome = PASSED if score == rule.points else PARTIAL if score > 0 else FAILED
        work.add(CheckResult(rule.id, rule.name, round(score, 2), rule.points, outcome, feedback[:MAX_FEEDBACK_LINES] or ["no problems found"]))


def yamllint_feedback(text: str) -> tuple[int, list[str]]:
    problems = list(linter.run(text, YamlLintConfig(YAMLLINT_CONFIG)))
    errors = sum(1 for problem in problems if problem.level == "error")
    lines = [f"configure.yaml:{p.line}:{p.column}: yamllint {p.level}: {p.desc} ({p.rule or 'syntax'})" for p in problems]
    return errors, lines


def syntax_check(run: GradingRun, work: SubmissionWork) -> tuple[bool | None, list[str]]:
    """True or False as Ansible says; None when the sandbox itself failed."""
    name = f"dcgan-syntax-{work.run_id}"
    log_path = work.folder / "syntax-check.txt"
    try:
        result = run_sandboxed(
            run.client,
            run.controller_image,
            name,
            network="none",
            files={"configure.yaml": work.submission.playbook, "inventory.yaml": SYNTAX_INVENTORY},
            command=["ansible-playbook", "--syntax-check", "-i", "inventory.yaml", "configure.yaml"],
            timeout=SYNTAX_CHECK_TIMEOUT_S,
            log_path=log_path,
            labels={RUN_LABEL: work.run_id},
        )
    except Exception as error:  # noqa: BLE001 - reported as the check's own failure
        return None, [f"the syntax check could not run: {error}"]
    finally:
        remove_container(run.client, name)
    if result.ok:
        return True, []
    lines = [line for line in result.log.splitlines() if line.strip() and not line.startswith("[WARNING]")]
    reason = "timed out" if result.timed_out else "failed"
    return False, [f"ansible-playbook --syntax-check {reason}:"] + [f"  {line}" for line in lines[-12:]]


def rule_feedback(work: SubmissionWork) -> tuple[list, list[str]]:
    findings, problem = rules_in_child(work.playbook_path)
    if problem:
        return [], [f"playbook rules not applied: {problem}"]
    return findings, [finding.format("configure.yaml") for finding in findings]


def rules_in_child(path) -> tuple[list, str]:
    """The rules' findings for the file, or why the rules gave up on it, from a limited child process."""
    code = RULES_CHILD.format(cpu=RULES_CPU_S, memory=RULES_MEMORY_BYTES)
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=RULES_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        return [], f"the rules gave up after {RULES_TIMEOUT_S} s on this file"
    try:
        answer = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        reason = "its CPU or memory limit" if done.returncode < 0 or "MemoryError" in done.stderr else "an error"
        return [], f"the rules stopped on this file ({reason}, exit {done.returncode})"
    if "error" in answer:
        return [], answer["error"]
    return [rules.Finding(**finding) for finding in answer["findings"]], ""
