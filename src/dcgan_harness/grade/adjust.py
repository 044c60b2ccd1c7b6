"""What the course's policy does to the checks once they are decided: the late
penalty, then the teaching staff's overrides, last, as written.

The penalty is a check of its own (id `late`, 0 points at most, negative
when it takes points), so every format shows it and the score stays the sum
of the checks. An override sets one check's points for one student, the
penalty included, and says so in that check's feedback.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from .results import (
    FAILED,
    PARTIAL,
    PASSED,
    CheckResult,
    SubmissionResult,
    format_points,
)
from .rubric import LATE_CHECK_ID, Rubric
from .submission import SubmissionError, clean_name

OVERRIDE_COLUMNS = ["student", "check", "points", "reason"]


@dataclass(frozen=True)
class Override:
    student: str
    check: str
    points: float
    reason: str
    line: int


def read_overrides(path: Path, rubric: Rubric) -> list[Override]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise SubmissionError(f"--overrides {path}: cannot read it ({error.strerror}); pass a CSV file student,check,points,reason") from None
    except UnicodeDecodeError:
        raise SubmissionError(f"--overrides {path}: not UTF-8 text; save it as a UTF-8 CSV file") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows or [cell.strip().lower() for cell in rows[0]] != OVERRIDE_COLUMNS:
        raise SubmissionError(f"--overrides {path}: its first line must be the header student,check,points,reason")
    known = [*rubric.check_ids, LATE_CHECK_ID]
    overrides: dict[tuple[str, str], Override] = {}
    for number, row in enumerate(rows[1:], 2):
        if not any(cell.strip() for cell in row):
            continue
        where = f"--overrides {path}:{number}"
        if len(row) != 4 or not all(cell.strip() for cell in row):
            raise SubmissionError(f"{where}: write four cells, student,check,points,reason (quote a reason holding commas)")
        student, check, points_text, reason = (cell.strip() for cell in row)
        if check not in known:
            raise SubmissionError(f"{where}: no check {check!r} in the rubric; the checks are {', '.join(known)}")
        try:
            points = float(points_text)
        except ValueError:
            raise SubmissionError(f"{where}: points {points_text!r} is not a number") from None
        if check == LATE_CHECK_ID and points > 0:
            raise SubmissionError(f"{where}: the late penalty is 0 or negative points, not {points_text}; write 0 to waive it")
        rule = rubric.rule(check)
        if rule is not None and not 0 <= points <= rule.points:
            raise SubmissionError(f"{where}: {check} is worth 0 to {format_points(rule.points)} points, not {points_text}")
        key = (student.casefold(), check)
        if key in overrides:
            raise SubmissionError(f"{where}: {student} {check} is overridden twice (first on line {overrides[key].line}); keep one")
        overrides[key] = Override(student, check, points, reason, number)
    return list(overrides.values())


def apply_late_penalty(result: SubmissionResult, rubric: Rubric, days_late: int) -> None:
    if rubric.late is None or days_late <= 0:
        return
    earned = result.score
    penalty = rubric.late.penalty(earned, days_late)
    share = format_points(round(rubric.late.penalty_per_day * 100, 2))
    feedback = [
        f"the graded commit is dated {days_late} started day(s) after the deadline: {share}% of the "
        f"{format_points(earned)} points earned per day, {format_points(penalty)} point(s) off"
    ]
    result.checks.append(
        CheckResult(LATE_CHECK_ID, f"Late: {days_late} day(s) after the deadline", -penalty, 0, FAILED if penalty else PASSED, feedback)
    )


def apply_overrides(result: SubmissionResult, overrides: list[Override]) -> None:
    for override in overrides:
        if _student(override) != result.name.casefold():
            continue
        check = result.check(override.check)
        if check is None and override.check == LATE_CHECK_ID:
            check = CheckResult(LATE_CHECK_ID, "Late penalty", 0, 0, PASSED, [])
            result.checks.append(check)
        if check is None:
            continue
        before = check.score
        check.score = override.points
        if check.id == LATE_CHECK_ID:
            check.outcome = FAILED if check.score < 0 else PASSED
        else:
            check.outcome = PASSED if check.score >= check.max_score else PARTIAL if check.score > 0 else FAILED
        check.feedback.append(
            f"override by the teaching staff: {format_points(check.score)}/{format_points(check.max_score)} points "
            f"instead of {format_points(before)}: {override.reason}"
        )


def unmatched(overrides: list[Override], names: list[str]) -> list[Override]:
    present = {name.casefold() for name in names}
    return [override for override in overrides if _student(override) not in present]


def _student(override: Override) -> str:
    # As the roster's names become submission names.
    return clean_name(override.student).casefold()
