"""What grading found: one result model with fixed outcome names, which every
format (Gradescope JSON, CSV, JUnit, the class table) renders."""

from __future__ import annotations

from dataclasses import dataclass, field

# The only outcomes a check can have.
PASSED = "passed"
PARTIAL = "partial"
FAILED = "failed"
ERROR = "error"  # the grader itself could not decide (a crash, a missing VM)
OUTCOMES = (PASSED, PARTIAL, FAILED, ERROR)


@dataclass
class CheckResult:
    id: str
    name: str
    score: float
    max_score: float
    outcome: str
    feedback: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome {self.outcome!r} is not one of {', '.join(OUTCOMES)}")

    @property
    def output(self) -> str:
        return "\n".join(self.feedback)


@dataclass
class StageReport:
    """What one stage did, for the submission's progress and log."""

    stage: str
    summary: str
    seconds: float


@dataclass
class SubmissionResult:
    name: str
    source: str
    checks: list[CheckResult] = field(default_factory=list)
    stages: list[StageReport] = field(default_factory=list)
    seconds: float = 0.0
    # Set when grading itself failed; the checks not reached score zero.
    crash: str | None = None

    @property
    def score(self) -> float:
        return round(sum(check.score for check in self.checks), 2)

    @property
    def max_score(self) -> float:
        return round(sum(check.max_score for check in self.checks), 2)

    def check(self, check_id: str) -> CheckResult | None:
        return next((check for check in self.checks if check.id == check_id), None)

    @property
    def summary_lines(self) -> list[str]:
        lines = [f"{self.name}: {format_points(self.score)}/{format_points(self.max_score)} points"]
        lines += [f"{stage.stage}: {stage.summary} ({stage.seconds:.1f}s)" for stage in self.stages]
        if self.crash:
            lines.append(f"grading failed: {self.crash}")
        return lines


def format_points(value: float) -> str:
    return f"{value:g}"
