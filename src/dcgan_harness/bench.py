"""Wall time of each phase of a fast local run, and of a second, idempotent run.

Prints a table and writes a JSON report. The targets (2-core machine, warm
caches) are printed beside the figures; they are goals to compare against, and
the benchmark reports rather than fails on them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .localcloud import LocalCloudError
from .localrun import FAST_EXTRA_ARGS, FAST_MNIST_LIMIT, REPO_ROOT, RunOptions, open_session
from .mnist import MnistError

PHASE_ORDER = ("engine", "image", "vm_up", "install", "clone", "build", "train", "fetch", "other")
TARGETS_S = {"fast_run_total": 300, "total_without_train": 90, "second_run": 30}


def measure(results_dir: Path) -> dict:
    started = time.monotonic()
    session = open_session(
        RunOptions(app="offline", mnist_limit=FAST_MNIST_LIMIT, extra_args=FAST_EXTRA_ARGS, results_dir=results_dir)
    )
    try:
        first = session.deploy()
        first_total = time.monotonic() - started
        if not first.ok:
            raise LocalCloudError(f"the first run failed (exit {first.returncode}); see {results_dir} and the log above")
        second_started = time.monotonic()
        second = session.deploy()
        second_total = time.monotonic() - second_started
    finally:
        session.close()
    phases = dict(session.phase_seconds)
    phases.update(first.phase_seconds())
    return {
        "phases_s": {name: phases[name] for name in PHASE_ORDER if name in phases},
        "fast_run_total_s": round(first_total, 2),
        "total_without_train_s": round(first_total - phases.get("train", 0.0), 2),
        "second_run_s": round(second_total, 2),
        "second_run_changed_tasks": second.changed_tasks,
        "mnist_images": FAST_MNIST_LIMIT,
        "extra_args": FAST_EXTRA_ARGS,
        "targets_s": TARGETS_S,
    }


def format_table(report: dict) -> str:
    rows = [(name, f"{seconds:8.1f}") for name, seconds in report["phases_s"].items()]
    rows += [
        ("fast run, total", f"{report['fast_run_total_s']:8.1f}   target < {TARGETS_S['fast_run_total']} s"),
        ("all but training", f"{report['total_without_train_s']:8.1f}   target < {TARGETS_S['total_without_train']} s"),
        ("second run", f"{report['second_run_s']:8.1f}   target < {TARGETS_S['second_run']} s"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{'phase'.ljust(width)}  seconds", f"{'-' * width}  -------"]
    lines += [f"{name.ljust(width)}  {value}" for name, value in rows]
    if report["second_run_changed_tasks"]:
        lines.append(f"second run changed: {', '.join(report['second_run_changed_tasks'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "bench-results.json")
    parser.add_argument("--results-dir", type=Path, default=REPO_ROOT / ".cache" / "bench-resultados")
    args = parser.parse_args(argv)
    try:
        report = measure(args.results_dir.resolve())
    except (LocalCloudError, MnistError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(format_table(report))
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
