"""The formats `check` prints findings in, each a small class with
``render(findings, path)``: the text people read, SARIF for code scanning and
GitHub Actions workflow commands that annotate the line. ``FORMATS`` picks
one by name."""

from __future__ import annotations

import inspect
import json
from importlib import metadata
from pathlib import Path
from urllib.parse import quote

from . import RULES
from .base import Rule
from .findings import ADVISORY, Finding

TOOL_NAME = "dcgan-harness"
SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"


def tool_version() -> str:
    try:
        return metadata.version(TOOL_NAME)
    except metadata.PackageNotFoundError:
        return "0"


def full_text(finding: Finding) -> str:
    """What a tool shows at the line: the problem, then how to fix it."""
    return f"{finding.message}. Fix: {finding.fix}"


class Text:
    """One line per finding, as people read it in a terminal."""

    # The summary line shares stdout only here; tools read the other formats from it.
    summary_on_stdout = True

    def render(self, findings: list[Finding], path: str | Path) -> str:
        return "".join(finding.format(path) + "\n" for finding in findings)


class Sarif:
    """A SARIF 2.1.0 log with one run: every rule, and one result per finding."""

    summary_on_stdout = False
    levels = {ADVISORY: "note"}

    def render(self, findings: list[Finding], path: str | Path) -> str:
        index = {rule.id: number for number, rule in enumerate(RULES)}
        driver = {
            "name": TOOL_NAME,
            "version": tool_version(),
            "rules": [self.rule(rule) for rule in RULES],
        }
        results = [self.result(finding, path, index.get(finding.rule)) for finding in findings]
        document = {
            "$schema": SARIF_SCHEMA,
            "version": SARIF_VERSION,
            "runs": [{"tool": {"driver": driver}, "results": results}],
        }
        return json.dumps(document, indent=2) + "\n"

    def level(self, severity: str) -> str:
        return self.levels.get(severity, "error")

    def rule(self, rule: type[Rule]) -> dict:
        return {
            "id": rule.id,
            "name": rule.__name__,
            "shortDescription": {"text": rule.doc()},
            "fullDescription": {"text": " ".join(inspect.cleandoc(rule.__doc__ or rule.doc()).split())},
            "defaultConfiguration": {"level": self.level(rule.severity)},
            "properties": {"tags": list(rule.tags)},
        }

    def result(self, finding: Finding, path: str | Path, rule_index: int | None) -> dict:
        result = {"ruleId": finding.rule}
        if rule_index is not None:
            result["ruleIndex"] = rule_index
        result["level"] = self.level(finding.severity)
        result["message"] = {"text": full_text(finding)}
        result["locations"] = [
            {
                "physicalLocation": {
                    "artifactLocation": {"uri": self.uri(path)},
                    "region": {"startLine": max(finding.line, 1)},
                }
            }
        ]
        return result

    @staticmethod
    def uri(path: str | Path) -> str:
        # Relative paths stay relative, so code scanning finds the file in the repository.
        path = Path(path)
        return path.as_uri() if path.is_absolute() else quote(path.as_posix())


class GitHub:
    """One GitHub Actions workflow command per finding: an annotation on its line."""

    summary_on_stdout = False
    commands = {ADVISORY: "notice"}

    def render(self, findings: list[Finding], path: str | Path) -> str:
        file = self.escape_property(Path(path).as_posix())
        return "".join(
            f"::{self.commands.get(finding.severity, 'error')} file={file},line={max(finding.line, 1)},"
            f"title={self.escape_property(finding.rule)}::{self.escape_data(full_text(finding))}\n"
            for finding in findings
        )

    @staticmethod
    def escape_data(text: str) -> str:
        # `%` first, so the escapes that follow are not escaped again.
        return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")

    @classmethod
    def escape_property(cls, text: str) -> str:
        return cls.escape_data(text).replace(":", "%3A").replace(",", "%2C")


FORMATS: dict[str, type[Text | Sarif | GitHub]] = {"text": Text, "sarif": Sarif, "github": GitHub}
