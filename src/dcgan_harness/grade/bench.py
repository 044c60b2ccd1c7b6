"""`make bench-grade`: submissions graded per hour, fast mode, at --jobs 1 and 2,
and the time a second `grade` of the unchanged class takes (no VM).

Grades the project's test class (tests/grade/submissions, less the endless
one, which only measures --timeout) twice, keeps the second grading's
results for reuse, then runs `dcgan-harness grade` on the class again into
that folder; prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from ..bench_floor import cpu_model
from ..localcloud import LocalCloudError, down, progress
from ..localrun import OFFLINE_APP, REPO_ROOT, default_mnist_dir
from . import command, reuse
from .finish import Finisher
from .pipeline import grade_class, start_grading
from .rubric import load_rubric
from .submission import discover
from .work import DEFAULT_TIMEOUT_S, FAST

TEST_CLASS = REPO_ROOT / "tests" / "grade" / "submissions"
LEFT_OUT = ("never-ends",)
JOBS = (1, 2)
TARGET_PER_HOUR = 40


def measure(jobs_options=JOBS) -> dict:
    submissions = [s for s in discover([TEST_CLASS]) if s.name not in LEFT_OUT]
    figures = {"submissions": len(submissions), "mode": FAST, "cpu": cpu_model(), "runs": []}
    with tempfile.TemporaryDirectory(prefix="dcgan-bench-grade-") as tmp:
        started = time.monotonic()
        run = start_grading(OFFLINE_APP, default_mnist_dir(), FAST, DEFAULT_TIMEOUT_S[FAST], load_rubric(), Path(tmp))
        figures["setup_seconds"] = round(time.monotonic() - started, 1)
        try:
            for jobs in jobs_options:
                run.out_dir = Path(tmp) / f"jobs-{jobs}"
                progress(f"bench-grade: {len(submissions)} submissions at --jobs {jobs}")
                started = time.monotonic()
                results = grade_class(run, submissions, jobs)
                seconds = time.monotonic() - started
                figures["runs"].append({
                    "jobs": jobs,
                    # Other work on the machine slows grading; the figure says how much there was.
                    "load_average_1min_at_end": round(os.getloadavg()[0], 2),
                    "seconds": round(seconds, 1),
                    "per_hour": round(len(results) * 3600 / seconds, 1),
                    "scores": {r.name: r.score for r in results},
                })  # fmt: skip
            keep_for_reuse(run, submissions, results)
            figures["regrade"] = regrade_seconds(run.out_dir, len(submissions))
        finally:
            down(run.grading_id, client=run.client)
    return figures


def keep_for_reuse(run, submissions, results) -> None:
    """What the command keeps after a grading, so that the next one can reuse it."""
    finisher = Finisher(run.rubric, run.out_dir, reuse.Context.of_run(run))
    for submission, result in zip(submissions, results):
        finisher(submission, result)


def regrade_seconds(out_dir: Path, count: int) -> dict:
    """`dcgan-harness grade` of the unchanged class into the folder that holds its results."""
    started = time.monotonic()
    status = command.main(["--out", str(out_dir), *[str(path) for path in class_paths()]])
    seconds = time.monotonic() - started
    return {"seconds": round(seconds, 2), "target_seconds": round(2 + 0.1 * count, 1), "exit_status": status}


def class_paths() -> list[Path]:
    return sorted(p for p in TEST_CLASS.iterdir() if not p.name.startswith(".") and p.stem not in LEFT_OUT)


def print_table(figures: dict) -> None:
    print(f"grading {figures['submissions']} test submissions, {figures['mode']} mode, on {figures['cpu']}")
    print(f"setup (images, controller image, served app): {figures['setup_seconds']:.1f} s")
    print(f"{'jobs':>4}  {'seconds':>8}  {'per hour':>8}  {'load':>5}  target >= {TARGET_PER_HOUR} per hour")
    for run in figures["runs"]:
        print(f"{run['jobs']:>4}  {run['seconds']:>8.1f}  {run['per_hour']:>8.1f}  {run['load_average_1min_at_end']:>5.2f}")
    regrade = figures.get("regrade")
    if regrade:
        print(f"second grade of the unchanged class (no VM): {regrade['seconds']:.2f} s, target < {regrade['target_seconds']} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dcgan_harness.grade.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("bench-grade-results.json"))
    args = parser.parse_args(argv)
    try:
        figures = measure()
    except LocalCloudError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print_table(figures)
    args.output.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
