"""What every result goes through once its stages ran or were reused, in this
order: its outcomes kept for the next grading, the course's submission
rules, where it came from, the late penalty, the overrides; then its
results.json is written again, and any credential in the files the stages
left beside it (the copy of configure.yaml, the logs) is masked, since the
folder is what gets published."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import reuse
from .adjust import Override, apply_late_penalty, apply_overrides
from .courserules import leak_lines, submission_checks
from .formats import GradescopeJson
from .leaks import mask_file
from .results import SubmissionResult
from .rubric import LATE_CHECK_ID, SUBMISSION_CHECK_IDS, Rubric
from .submission import Submission

# The logs are capped at 4 MiB; nothing the stages write beside results.json is larger.
MAX_MASKED_BYTES = 16 * 1024 * 1024


@dataclass
class Finisher:
    rubric: Rubric
    out_dir: Path
    context: reuse.Context | None = None  # None: keep nothing for the next grading
    overrides: list[Override] = field(default_factory=list)

    def __call__(self, submission: Submission, result: SubmissionResult) -> SubmissionResult:
        folder = self.out_dir / result.name
        if self.context is not None and not result.reused_from:
            reuse.store(folder, submission, result, self.context)
        decided_later = (*SUBMISSION_CHECK_IDS, LATE_CHECK_ID)
        result.checks = [check for check in result.checks if check.id not in decided_later]
        result.checks += submission_checks(self.rubric, submission)
        order = self.rubric.check_ids
        result.checks.sort(key=lambda check: order.index(check.id) if check.id in order else len(order))
        result.provenance = submission.origin
        result.leaked_credentials = len(leak_lines(submission))
        apply_late_penalty(result, self.rubric, submission.origin.days_late if submission.origin else 0)
        apply_overrides(result, self.overrides)
        GradescopeJson().write(folder, result, self.rubric.visibility)
        for path in folder.iterdir() if folder.is_dir() else ():
            if path.is_file() and not path.is_symlink() and path.stat().st_size <= MAX_MASKED_BYTES:
                mask_file(path)
        return result
