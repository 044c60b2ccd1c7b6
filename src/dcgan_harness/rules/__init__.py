"""The course's playbook rules, run on students' configure.yaml by graders.

Each rule is a class (``base.Rule``) with an id, a severity, tags and a
one-line doc; ``RULES`` lists them in the order they run and ``RULE_IDS``
is derived from it. Tasks are read with Ansible's own parser
(``model.py``), so every spelling Ansible accepts is judged the same way.
Nothing in the checked playbook is executed; templates are rendered, where a
rule needs a value, in Jinja's sandbox from the playbook's own variables.

    findings = check_file("configure.yaml")
"""

from __future__ import annotations

from pathlib import Path

from .async_poll import AsyncPoll
from .base import COURSE_SETTINGS, Course, Rule
from .controller_files import ControllerFiles
from .findings import ADVISORY, ERROR, Finding
from .launcher import CourseLauncher
from .loader import PlaybookError, load_playbook, parse_playbook
from .local_execution import LocalExecution
from .model import Playbook, read_playbook
from .privilege import BecomeMissing, BecomeUnneeded
from .required import (
    AptUpdateCache,
    DockerBuildModule,
    FetchIntoResultados,
    RequiredApt,
    RequiredDockerImage,
    RequiredFetch,
    RequiredGit,
)
from .structure import SelfContained, TaskName, TaskStructure
from .training import RequiredTraining

RULES: tuple[type[Rule], ...] = (
    TaskName,
    TaskStructure,
    RequiredApt,
    AptUpdateCache,
    RequiredGit,
    RequiredDockerImage,
    DockerBuildModule,
    RequiredTraining,
    RequiredFetch,
    FetchIntoResultados,
    BecomeMissing,
    BecomeUnneeded,
    AsyncPoll,
    LocalExecution,
    ControllerFiles,
    SelfContained,
    CourseLauncher,
)
RULE_IDS = frozenset(rule.id for rule in RULES)

__all__ = [
    "ADVISORY", "COURSE_SETTINGS", "ERROR", "RULES", "RULE_IDS", "Course", "Finding", "PlaybookError", "Rule",
    "check_file", "check_playbook", "has_errors", "load_playbook", "parse_playbook",
]


def check_playbook(data: list, course: Course = COURSE_SETTINGS, directory: str = "/playbook") -> list[Finding]:
    """Findings for a playbook already loaded by load_playbook, sorted by line."""
    playbook: Playbook = read_playbook(data, directory)
    findings = {finding for rule in RULES for finding in rule().check(playbook, course)}
    return sorted(findings, key=lambda finding: (finding.line, finding.rule, finding.message))


def check_file(path: str | Path, course: Course = COURSE_SETTINGS) -> list[Finding]:
    """Findings for the playbook at path; raises PlaybookError for unreadable YAML."""
    path = Path(path)
    return check_playbook(load_playbook(path), course, str(path.resolve().parent))


def has_errors(findings: list[Finding]) -> bool:
    """Whether any finding fails the check; advisories alone do not."""
    return any(finding.severity == ERROR for finding in findings)
