"""Grading again only what changed.

A submission's outcomes are decided by its configure.yaml, what the rubric
expects of a run (not its points), the app the VMs clone, the grader's own
code and Ansible, the mode and the time limit. That key and the outcomes
are kept beside results.json (`reuse.json`); the next `grade` into the same
--out reuses them when the key matches, recomputing each score from the
rubric's current points, and needs no VM for it. `--force` grades again.

What a repository's history decides (the commit graded, lateness, the
submission rules) and the overrides are not kept: they are applied to a
reused result as to a fresh one.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import re
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..localcloud import progress
from ..localcloud.gitserver import commit_folder
from .formats import printable, write_atomically
from .results import (
    ERROR,
    FAILED,
    PARTIAL,
    PASSED,
    CheckResult,
    StageReport,
    SubmissionResult,
)
from .rubric import STAGE_CHECK_IDS, Rubric
from .staging import prepare_app
from .submission import Submission
from .work import STAGED_IMAGES

RECORD = "reuse.json"
RECORD_FORMAT = 1
PACKAGE = Path(__file__).resolve().parent.parent
# Modules that present, collect or adjust results: a change to them changes no
# outcome a VM decided. Every other module of the package is in the key.
NOT_DECIDING = frozenset({
    "cli.py", "report.py", "bench.py", "bench_floor.py", "aws.py",
    "grade/command.py", "grade/formats.py", "grade/report_html.py", "grade/similarity.py", "grade/reuse.py",
    "grade/collect.py", "grade/repos.py", "grade/git.py", "grade/leaks.py", "grade/courserules.py",
    "grade/adjust.py", "grade/finish.py", "grade/bench.py", "grade/results.py",
})  # fmt: skip
STATIC_SUMMARY = re.compile(r"yamllint (\d+) error\(s\), syntax-check (passed|failed), (\d+) rule finding\(s\)")


@dataclass(frozen=True)
class Context:
    """What a grading run shares that decides outcomes."""

    rubric: Rubric
    mode: str
    timeout: float
    app_commit: str

    @classmethod
    def of_run(cls, run) -> Context:
        return cls(run.rubric, run.mode, run.timeout, run.served.commit)


@functools.cache
def grader_version() -> str:
    """The package's version and a digest of every module that decides an outcome, with Ansible's version."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*")):
        relative = path.relative_to(PACKAGE).as_posix()
        if path.is_file() and path.suffix in (".py", ".yaml", ".pth") and relative not in NOT_DECIDING and "__pycache__" not in relative:
            digest.update(relative.encode() + b"\0" + path.read_bytes() + b"\0")
    try:
        import ansible.release

        ansible_version = ansible.release.__version__
    except ImportError:  # the harness always has it; the key just says it did not
        ansible_version = "none"
    return f"{importlib.metadata.version('dcgan-harness')}+{digest.hexdigest()[:16]} ansible-core {ansible_version}"


def key(submission: Submission, context: Context) -> dict:
    content = submission.playbook if submission.playbook is not None else b"no playbook: " + submission.problem.encode()
    rubric = context.rubric
    return {
        "format": RECORD_FORMAT,
        "configure_sha256": hashlib.sha256(content).hexdigest(),
        "expect": {"epochs": rubric.epochs, "world_size": rubric.world_size, "batch_size": rubric.batch_size, "image": rubric.image},
        "app_commit": context.app_commit,
        "grader": grader_version(),
        "mode": context.mode,
        "timeout": context.timeout,
    }


def offline_app_commit(app_dir: Path, mnist_dir: Path, mode: str) -> str:
    """The commit start_grading will serve, computed without Docker: the same folder commits to the same id."""
    with tempfile.TemporaryDirectory(prefix="dcgan-grade-reuse-") as tmp:
        app = prepare_app(app_dir, mnist_dir, STAGED_IMAGES[mode], Path(tmp))
        return commit_folder(app, Path(tmp) / "served.git")


def store(folder: Path, submission: Submission, result: SubmissionResult, context: Context) -> bool:
    """Keep a fresh result's outcomes for the next grading; not when the grader itself failed somewhere."""
    checks = [check for check in result.checks if check.id in STAGE_CHECK_IDS]
    if result.crash or result.reused_from or any(check.outcome == ERROR for check in checks):
        return False
    record = {
        "key": key(submission, context),
        "graded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": result.seconds,
        "checks": [asdict(check) for check in checks],
        "stages": [asdict(stage) for stage in result.stages],
    }
    write_atomically(folder / RECORD, json.dumps(record, indent=1) + "\n")
    return True


def forget(folder: Path) -> None:
    (folder / RECORD).unlink(missing_ok=True)


def earlier_result(folder: Path, submission: Submission, context: Context) -> SubmissionResult | None:
    """The result an earlier grading into folder gives this submission now, or None when it must be graded."""
    try:
        record = json.loads((folder / RECORD).read_text(encoding="utf-8"))
        if record.get("key") != key(submission, context) or not (folder / "results.json").is_file():
            return None
        return restore(record, submission, context.rubric)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no record, or one this grader cannot read: grade it


def restore(record: dict, submission: Submission, rubric: Rubric) -> SubmissionResult | None:
    stored = {check["id"]: check for check in record["checks"]}
    stages = [StageReport(**stage) for stage in record["stages"]]
    checks = []
    for rule in rubric.checks:
        if rule.id not in STAGE_CHECK_IDS:
            continue
        if rule.id not in stored:
            return None  # a check the earlier grading did not have
        checks.append(rescore(rule, stored[rule.id], stages))
    result = SubmissionResult(submission.name, str(submission.source), checks=checks, stages=stages)
    result.reused_from = f"{record['graded_at']} ({float(record['seconds']):.0f}s then)"
    return result


def rescore(rule, stored: dict, stages: list[StageReport]) -> CheckResult:
    """The stored outcome at the rubric's current points."""
    outcome, feedback = stored["outcome"], list(stored["feedback"])
    static = next((stage for stage in stages if stage.stage == "static"), None)
    counted = STATIC_SUMMARY.search(static.summary) if rule.id == "static" and static else None
    if counted:
        # The static points follow from the count of findings once YAML and syntax pass, whatever per_finding was.
        sound = counted.group(1) == "0" and counted.group(2) == "passed"
        score = max(0.0, rule.points - rule.per_finding * int(counted.group(3))) if sound else 0.0
        outcome = PASSED if score == rule.points else PARTIAL if score > 0 else FAILED
        return CheckResult(rule.id, rule.name, round(score, 2), rule.points, outcome, feedback)
    if outcome == PASSED:
        score = rule.points
    elif outcome == PARTIAL and stored["max_score"]:
        score = round(rule.points * stored["score"] / stored["max_score"], 2)
    else:
        score = 0.0
    return CheckResult(rule.id, rule.name, score, rule.points, outcome, feedback)


def reuse_earlier(run, submission: Submission, index: int, total: int) -> SubmissionResult | None:
    """For grade_submission to call first: the earlier result when this submission needs no grading, else None."""
    result = earlier_result(run.out_dir / submission.name, submission, Context.of_run(run))
    if result is not None:
        announce(result, index, total)
    return result


def announce(result: SubmissionResult, index: int, total: int) -> None:
    progress(printable(f"[{index}/{total}] {result.name}: reused: the grading of {result.reused_from}; --force grades it again"))
