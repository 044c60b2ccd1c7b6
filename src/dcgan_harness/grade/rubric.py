"""The rubric: which checks count, for how many points, what a complete run is,
and what a late submission costs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..errors import HarnessError

DEFAULT_RUBRIC = Path(__file__).resolve().parent / "default_rubric.yaml"
# The checks the stages decide, in the order of the assignment.
STAGE_CHECK_IDS = ("static", "install", "clone", "build", "run", "fetch")
# The course's submission rules, decided from the repository, not on a VM.
SUBMISSION_CHECK_IDS = ("files", "credentials")
CHECK_IDS = STAGE_CHECK_IDS + SUBMISSION_CHECK_IDS
# The penalty for lateness appears as a check of its own, after the others.
LATE_CHECK_ID = "late"
VISIBILITIES = ("visible", "hidden", "after_due_date", "after_published")


class RubricError(HarnessError):
    """The rubric file is unusable; the message names the file, the key and the fix."""


@dataclass(frozen=True)
class CheckRule:
    id: str
    name: str
    points: float
    per_finding: float = 0.0


@dataclass(frozen=True)
class LatePolicy:
    """What a commit dated after the deadline costs, when it is the one graded (--late-policy grade-latest)."""

    penalty_per_day: float  # a fraction of the points earned, per started day
    max_days: int  # commits dated later than this after the deadline are not graded

    def penalty(self, score: float, days: int) -> float:
        return round(max(0.0, score) * min(1.0, self.penalty_per_day * min(days, self.max_days)), 2)


@dataclass(frozen=True)
class Rubric:
    checks: tuple[CheckRule, ...]
    epochs: int = 1
    world_size: int = 1
    batch_size: int | None = None
    image: str = "dist_dcgan"
    visibility: str = "visible"
    path: Path = DEFAULT_RUBRIC
    late: LatePolicy | None = None

    def rule(self, check_id: str) -> CheckRule | None:
        return next((rule for rule in self.checks if rule.id == check_id), None)

    @property
    def check_ids(self) -> list[str]:
        return [rule.id for rule in self.checks]


def load_rubric(path: str | Path | None = None) -> Rubric:
    path = Path(path) if path else DEFAULT_RUBRIC
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise RubricError(f"--rubric {path}: cannot read it ({error.strerror}); pass an existing YAML file") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise RubricError(f"--rubric {path}{where}: not valid YAML; compare it with {DEFAULT_RUBRIC}") from None
    if not isinstance(data, dict) or not isinstance(data.get("checks"), dict) or not data["checks"]:
        raise RubricError(f"--rubric {path}: needs a 'checks:' mapping of check ids to points; see {DEFAULT_RUBRIC}")
    checks = tuple(_check_rule(path, check_id, spec) for check_id, spec in data["checks"].items())
    expect = data.get("expect") or {}
    if not isinstance(expect, dict):
        raise RubricError(f"--rubric {path}: 'expect:' must be a mapping (epochs, world_size, batch_size, image)")
    visibility = data.get("visibility", "visible")
    if visibility not in VISIBILITIES:
        raise RubricError(f"--rubric {path}: visibility {visibility!r} is not one of {', '.join(VISIBILITIES)}")
    return Rubric(
        checks=tuple(sorted(checks, key=lambda rule: CHECK_IDS.index(rule.id))),
        epochs=_positive_int(path, "expect.epochs", expect.get("epochs", 1)),
        world_size=_positive_int(path, "expect.world_size", expect.get("world_size", 1)),
        batch_size=None if expect.get("batch_size") is None else _positive_int(path, "expect.batch_size", expect["batch_size"]),
        image=str(expect.get("image", "dist_dcgan")),
        visibility=visibility,
        path=path,
        late=_late_policy(path, data.get("late")),
    )


def _late_policy(path: Path, spec) -> LatePolicy | None:
    if spec is None or spec == "none":
        return None
    example = "write late: {penalty_per_day: 10%, max_days: 5}, or late: none"
    if not isinstance(spec, dict) or set(spec) != {"penalty_per_day", "max_days"}:
        raise RubricError(f"--rubric {path}: 'late:' needs penalty_per_day and max_days; {example}")
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%\s*", str(spec["penalty_per_day"]))
    if not match or float(match.group(1)) > 100:
        raise RubricError(f"--rubric {path}: late.penalty_per_day {spec['penalty_per_day']!r} is not a percentage up to 100%; {example}")
    return LatePolicy(float(match.group(1)) / 100, _positive_int(path, "late.max_days", spec["max_days"]))


def _check_rule(path: Path, check_id: str, spec) -> CheckRule:
    if check_id not in CHECK_IDS:
        raise RubricError(f"--rubric {path}: unknown check {check_id!r}; the checks are {', '.join(CHECK_IDS)}")
    if isinstance(spec, (int, float)):
        spec = {"points": spec}
    if not isinstance(spec, dict):
        raise RubricError(f"--rubric {path}: check {check_id!r} must be a number of points or a mapping with 'points'")
    points = spec.get("points")
    if not isinstance(points, (int, float)) or isinstance(points, bool) or points < 0:
        raise RubricError(f"--rubric {path}: check {check_id!r} needs 'points:' as a number of at least 0, not {points!r}")
    per_finding = spec.get("per_finding", 0)
    if not isinstance(per_finding, (int, float)) or per_finding < 0:
        raise RubricError(f"--rubric {path}: {check_id}.per_finding must be a number of at least 0, not {per_finding!r}")
    return CheckRule(check_id, str(spec.get("name") or check_id), float(points), float(per_finding))


def _positive_int(path: Path, key: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise RubricError(f"--rubric {path}: {key} must be a whole number of at least 1, not {value!r}")
    return value
