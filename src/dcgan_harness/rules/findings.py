"""What a rule reports: one problem at one line, and how to fix it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ERROR = "error"
# Shown to the student as feedback; it neither fails `check` nor costs points.
ADVISORY = "advisory"


@dataclass(frozen=True)
class Finding:
    rule: str
    line: int
    task: str
    message: str
    fix: str
    severity: str = ERROR

    def format(self, path: str | Path) -> str:
        kind = " (advisory)" if self.severity == ADVISORY else ""
        return f"{path}:{self.line}: [{self.rule}]{kind} {self.task}: {self.message}. Fix: {self.fix}"
