"""`dcgan-harness grade`: grade students' configure.yaml, and merge shards' grades.

    dcgan-harness grade --out grades --jobs 2 submissions/
    dcgan-harness grade merge shard-1/ shard-2/ --out grades
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import mnist
from ..localcloud import LocalCloudError, check_app_dir, down, progress
from ..localrun import OFFLINE_APP, default_mnist_dir
from .formats import GradesCsv, JUnitXml, write_atomically
from .pipeline import grade_class, start_grading, write_class_files
from .rubric import RubricError, load_rubric
from .submission import SubmissionError, discover, parse_shard, shard
from .work import DEFAULT_TIMEOUT_S, MODES


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog or "dcgan-harness grade",
        description="Grade configure.yaml submissions end to end, each on a fresh local VM, from a sandbox.",
    )
    parser.add_argument("submissions", nargs="+", type=Path, metavar="SUBMISSION",
                        help="configure.yaml files, folders holding one, .zip/.tar.gz archives, or folders of these")
    parser.add_argument("--out", type=Path, default=Path("grades"), help="where results go (default ./grades)")
    parser.add_argument("--jobs", type=int, default=1, help="submissions graded at once, each with its own VM")
    parser.add_argument("--timeout", type=float, help="seconds a playbook may run (default 900 fast, 3600 full)")
    parser.add_argument("--mode", choices=MODES, default="fast",
                        help="fast: the first 256 MNIST test images; full: all 10,000 (the course's run)")
    parser.add_argument("--rubric", type=Path, help="a rubric YAML file (default: the assignment's steps)")
    parser.add_argument("--app-dir", type=Path, default=OFFLINE_APP,
                        help="the app served under upstream's URL (default: the project's offline stand-in)")
    parser.add_argument("--mnist-dir", type=Path, help="the MNIST t10k files (default $DCGAN_MNIST_DIR or ../shared/data/mnist)")
    parser.add_argument("--shard", help="K/N: grade every N-th submission starting at the K-th")
    return parser  # fmt: skip


def build_merge_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog or "dcgan-harness grade merge", description="Join the grades.csv and junit.xml of several shards."
    )
    parser.add_argument("shards", nargs="+", type=Path, metavar="DIR", help="the --out folders of the shards")
    parser.add_argument("--out", type=Path, default=Path("grades"), help="where the joined files go (default ./grades)")
    return parser


def grade(args: argparse.Namespace) -> int:
    if args.jobs < 1:
        raise SubmissionError(f"--jobs must be at least 1, not {args.jobs}")
    timeout = args.timeout if args.timeout is not None else DEFAULT_TIMEOUT_S[args.mode]
    if timeout <= 0:
        raise SubmissionError(f"--timeout must be a number of seconds above 0, not {args.timeout:g}")
    rubric = load_rubric(args.rubric)
    check_app_dir(args.app_dir, "--app-dir")
    mnist_dir = args.mnist_dir or default_mnist_dir()
    mnist.verify_test_files(mnist_dir)
    submissions = discover(args.submissions)
    if args.shard:
        k, n = parse_shard(args.shard)
        submissions = shard(submissions, k, n)
        progress(f"grade: shard {k}/{n}: {len(submissions)} submission(s)")
    if not submissions:
        raise SubmissionError("no submissions to grade in this shard")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    progress(f"grade: {len(submissions)} submission(s), mode {args.mode}, {args.jobs} at a time, results in {out}")
    run = start_grading(args.app_dir.resolve(), Path(mnist_dir), args.mode, timeout, rubric, out)
    progress(f"grade: run {run.grading_id}; `dcgan-harness cloud down` removes what an interrupted run leaves")
    try:
        results = grade_class(run, submissions, args.jobs)
    finally:
        down(run.grading_id, client=run.client)
    write_class_files(run, results)
    progress(f"grade: wrote {out}/grades.csv, {out}/junit.xml and a results.json per submission")
    return 0


def merge(args: argparse.Namespace) -> int:
    csvs, junits = [], []
    for folder in args.shards:
        csv_path, junit_path = folder / GradesCsv.filename, folder / JUnitXml.filename
        if not csv_path.is_file() or not junit_path.is_file():
            raise SubmissionError(f"{folder} has no {GradesCsv.filename} and {JUnitXml.filename}; pass the --out folders of `grade`")
        csvs.append(csv_path)
        junits.append(junit_path)
    try:
        merged_csv = GradesCsv().merge(csvs)
        merged_junit = JUnitXml().merge(junits)
    except ValueError as error:
        raise SubmissionError(str(error)) from None
    write_atomically(args.out / GradesCsv.filename, merged_csv)
    write_atomically(args.out / JUnitXml.filename, merged_junit)
    print(f"merged {len(csvs)} shard(s) into {args.out}/{GradesCsv.filename} and {args.out}/{JUnitXml.filename}")
    return 0


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "merge":
            return merge(build_merge_parser(f"{prog} merge" if prog else None).parse_args(argv[1:]))
        return grade(build_parser(prog).parse_args(argv))
    except (SubmissionError, RubricError, LocalCloudError, mnist.MnistError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the VMs and controllers of this run were removed", file=sys.stderr)
        return 130
    except OSError as error:
        print(f"error: {error.filename or ''}: {error.strerror or error}", file=sys.stderr)
        return 2

