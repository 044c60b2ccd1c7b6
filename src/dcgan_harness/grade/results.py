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


@dataclass(frozen=True)
class CommitRef:
    sha: str
    date: str  # committer date, ISO 8601 with its offset: set by the student's machine
    subject: str


@dataclass(frozen=True)
class Provenance:
    """Where a repository submission's configure.yaml came from, and what its history holds."""

    repository: str  # without credentials
    graded: CommitRef | None = None
    deadline: str = ""
    late: tuple[CommitRef, ...] = ()  # commits dated after the deadline, oldest first
    days_late: int = 0  # of the graded commit, counted in started days after the deadline
    collected_at: str = ""  # when `grade collect` fetched it; "" when cloned by `grade` itself
    # Files added, removed or changed against the course's template, other
    # than configure.yaml; None when no --template was given.
    changed_files: tuple[str, ...] | None = None
    leaks: tuple[str, ...] = ()  # one line per credential in the history, secrets masked
    commits_scanned: int = 0
    notes: tuple[str, ...] = ()  # what the feedback must say about dates and the collection

    @property
    def lines(self) -> list[str]:
        lines = [f"repository: {self.repository}"]
        if self.graded:
            lines.append(f"graded commit {self.graded.sha[:12]} ({self.graded.date}): {self.graded.subject}")
        if self.late:
            lines.append(f"commits dated after the deadline ({self.deadline}):")
            lines += [f"  late: {c.sha[:12]} {c.date} {c.subject}" for c in self.late]
        if self.days_late:
            lines.append(f"the graded commit is dated {self.days_late} day(s) after the deadline")
        return lines + list(self.notes)


@dataclass
class SubmissionResult:
    name: str
    source: str
    checks: list[CheckResult] = field(default_factory=list)
    stages: list[StageReport] = field(default_factory=list)
    seconds: float = 0.0
    # Set when grading itself failed; the checks not reached score zero.
    crash: str | None = None
    provenance: Provenance | None = None
    leaked_credentials: int = 0
    # When the checks' outcomes were those of an earlier grading of the same
    # playbook under the same rubric, app and grader: its date.
    reused_from: str = ""

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
        if self.reused_from:
            lines.append(f"reused: the outcomes of the grading of {self.reused_from} (same configure.yaml, rubric, app and grader)")
        lines += [f"{stage.stage}: {stage.summary} ({stage.seconds:.1f}s)" for stage in self.stages]
        if self.provenance:
            lines += self.provenance.lines
        if self.crash:
            lines.append(f"grading failed: {self.crash}")
        return lines


def format_points(value: float) -> str:
    return f"{value:g}"
