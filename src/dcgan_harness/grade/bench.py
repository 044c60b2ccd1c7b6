"""`make bench-grade`: submissions graded per hour, fast mode, at --jobs 1 and 2.

Grades the project's test class (tests/grade/submissions, less the endless
one, which only measures --timeout) twice, prints a table and writes JSON.
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
        finally:
            down(run.grading_id, client=run.client)
    return figures


def print_table(figures: dict) -> None:
    print(f"grading {figures['submissions']} test submissions, {figures['mode']} mode, on {figures['cpu']}")
    print(f"setup (images, controller image, served app): {figures['setup_seconds']:.1f} s")
    print(f"{'jobs':>4}  {'seconds':>8}  {'per hour':>8}  {'load':>5}  target >= {TARGET_PER_HOUR} per hour")
    for run in figures["runs"]:
        print(f"{run['jobs']:>4}  {run['seconds']:>8.1f}  {run['per_hour']:>8.1f}  {run['load_average_1min_at_end']:>5.2f}")


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
