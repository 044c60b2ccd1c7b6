"""`make bench-grade`: submissions graded per hour, fast mode, at --jobs 1 and 2,
on both kinds of VM, and the time a second `grade` of the unchanged class takes (no VM).

Two classes: the project's test class (tests/grade/submissions, less the
endless one, which only measures --timeout), whose failing submissions end
in seconds, and a class of complete submissions (copies of the course-style
one), whose every play installs, clones, builds, trains and fetches. Each is
graded at --jobs 1 and 2 on the unprivileged VMs and on the Docker VMs; the
test class's last grading is kept for reuse, then `dcgan-harness grade` runs
on it again into that folder. Prints a table and writes JSON.
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
from ..errors import run_command
from ..localcloud import down, progress
from ..localrun import OFFLINE_APP, REPO_ROOT, default_mnist_dir
from . import command, reuse
from .finish import Finisher
from .pipeline import grade_class, start_grading
from .rubric import load_rubric
from .submission import Submission, discover
from .work import DEFAULT_TIMEOUT_S, FAST, PRIVILEGED, UNPRIVILEGED

TEST_CLASS = REPO_ROOT / "tests" / "grade" / "submissions"
LEFT_OUT = ("never-ends",)
JOBS = (1, 2)
TARGET_PER_HOUR = 40
# Complete submissions: what a class that passes spends its time on.
COMPLETE = TEST_CLASS / "course-style.yaml"
TARGET_COMPLETE_PER_HOUR = 60
BACKENDS_MEASURED = (UNPRIVILEGED, PRIVILEGED)


def complete_class(count: int) -> list[Submission]:
    playbook = COMPLETE.read_bytes()
    return [Submission(f"complete-{i}", COMPLETE, playbook) for i in range(1, count + 1)]


def measure(jobs_options=JOBS, backends=BACKENDS_MEASURED, complete: int = 4, test_class: bool = True) -> dict:
    classes = {"complete": complete_class(complete)} if complete else {}
    if test_class:
        classes["test"] = [s for s in discover([TEST_CLASS]) if s.name not in LEFT_OUT]
    figures = {"classes": {k: len(v) for k, v in classes.items()}, "mode": FAST, "cpu": cpu_model(), "runs": []}
    with tempfile.TemporaryDirectory(prefix="dcgan-bench-grade-") as tmp:
        for backend in backends:
            started = time.monotonic()
            run = start_grading(
                OFFLINE_APP, default_mnist_dir(), FAST, DEFAULT_TIMEOUT_S[FAST], load_rubric(), Path(tmp), backend=backend
            )
            figures.setdefault("setup_seconds", {})[backend] = round(time.monotonic() - started, 1)
            try:
                for name, submissions in classes.items():
                    for jobs in jobs_options:
                        run.out_dir = Path(tmp) / f"{backend}-{name}-jobs-{jobs}"
                        figure, results = grade_once(run, name, submissions, jobs, backend)
                        figures["runs"].append(figure)
                if test_class and backend == backends[0]:
                    keep_for_reuse(run, classes["test"], results)
                    figures["regrade"] = regrade_seconds(run.out_dir, len(classes["test"]))
            finally:
                down(run.grading_id, client=run.client)
    return figures


def grade_once(run, class_name: str, submissions: list[Submission], jobs: int, backend: str) -> tuple[dict, list]:
    progress(f"bench-grade: {len(submissions)} {class_name} submissions at --jobs {jobs} on the {backend} VMs")
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    results = grade_class(run, submissions, jobs)
    seconds = time.monotonic() - started
    return {
        "class": class_name,
        "backend": backend,
        "jobs": jobs,
        # Other work on the machine slows grading; the figures say how much there was.
        "load_average_1min_at_start": round(load_before, 2),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "seconds": round(seconds, 1),
        "per_hour": round(len(results) * 3600 / seconds, 1),
        "scores": {r.name: r.score for r in results},
    }, results


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
    classes = ", ".join(f"{count} {name}" for name, count in figures["classes"].items())
    print(f"grading {classes} submissions, {figures['mode']} mode, on {figures['cpu']}")
    for backend, seconds in figures["setup_seconds"].items():
        print(f"setup on the {backend} VMs (images, controller image, served app): {seconds:.1f} s")
    print(
        f"{'class':>8}  {'VMs':>12}  {'jobs':>4}  {'seconds':>8}  {'per hour':>8}  {'load':>11}"
        f"  targets >= {TARGET_COMPLETE_PER_HOUR}/h complete at --jobs 2 unprivileged, >= {TARGET_PER_HOUR}/h test class"
    )
    for run in figures["runs"]:
        load = f"{run['load_average_1min_at_start']:.2f}->{run['load_average_1min_at_end']:.2f}"
        print(
            f"{run['class']:>8}  {run['backend']:>12}  {run['jobs']:>4}  {run['seconds']:>8.1f}  {run['per_hour']:>8.1f}  {load:>11}"
        )
    regrade = figures.get("regrade")
    if regrade:
        print(f"second grade of the unchanged class (no VM): {regrade['seconds']:.2f} s, target < {regrade['target_seconds']} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dcgan_harness.grade.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("bench-grade-results.json"))
    parser.add_argument("--complete", type=int, default=4, help="complete submissions in the second class (default 4; 0: none)")
    parser.add_argument("--vms", choices=BACKENDS_MEASURED, action="append", help="only these VMs (default: both)")
    parser.add_argument("--no-test-class", action="store_true", help="grade only the complete submissions")
    args = parser.parse_args(argv)
    def body() -> int:
        figures = measure(
            backends=tuple(args.vms or BACKENDS_MEASURED), complete=args.complete, test_class=not args.no_test_class
        )
        print_table(figures)
        args.output.write_text(json.dumps(figures, indent=2) + "\n")
        return 0

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
