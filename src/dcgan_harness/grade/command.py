"""`dcgan-harness grade`: grade students' configure.yaml, collect their
repositories, and merge shards' grades.

    dcgan-harness grade collect --roster roster.csv --out collected
    dcgan-harness grade --out grades --deadline 2021-05-24T13:59:00-03:00 collected/
    dcgan-harness grade --out grades --jobs 2 submissions/
    dcgan-harness grade merge shard-1/ shard-2/ --out grades
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

from .. import mnist
from ..errors import HarnessError, run_command
from ..localcloud import check_app_dir, down, progress
from ..localcloud.lxd import LXD_INSTALL_HINT, lxd_available
from ..localrun import OFFLINE_APP, default_mnist_dir
from . import report_html, reuse, similarity
from .adjust import read_overrides, unmatched
from .collect import collect, summary
from .finish import Finisher
from .formats import GradesCsv, JUnitXml, write_atomically
from .pipeline import grade_class, start_grading, write_class_files
from .repos import (
    GRADE_LATEST,
    LATE_POLICIES,
    ON_TIME,
    RepoOptions,
    find_submissions,
    load_template,
    parse_deadline,
    read_roster,
)
from .results import SubmissionResult
from .rubric import Rubric, load_rubric
from .submission import Submission, SubmissionError, parse_shard, shard
from .work import BACKENDS, DEFAULT_TIMEOUT_S, MODES, PRIVILEGED, UNPRIVILEGED


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog or "dcgan-harness grade",
        description="Grade configure.yaml submissions end to end, each on a fresh local VM, from a sandbox.",
    )
    parser.add_argument("submissions", nargs="*", metavar="SUBMISSION",
                        help="configure.yaml files, folders holding one, .zip/.tar.gz archives, git repositories "
                             "(a clone, a bare repository, an https/ssh/file URL), folders `grade collect` filled, or folders of these")
    parser.add_argument("--out", type=Path, default=Path("grades"), help="where results go (default ./grades)")
    parser.add_argument("--jobs", type=int, default=1, help="submissions graded at once, each with its own VM")
    parser.add_argument("--timeout", type=float, help="seconds a playbook may run (default 900 fast, 3600 full)")
    parser.add_argument("--mode", choices=MODES, default="fast",
                        help="fast: the first 256 MNIST test images; full: all 10,000 (the course's run)")
    parser.add_argument("--rubric", type=Path, help="a rubric YAML file (default: the assignment's steps)")
    parser.add_argument("--app-dir", type=Path, default=OFFLINE_APP,
                        help="the app served under upstream's URL (default: the project's offline stand-in)")
    parser.add_argument("--mnist-dir", type=Path, help="the MNIST t10k files (default $DCGAN_MNIST_DIR, else ../shared/data/mnist, else .cache/mnist, fetched once)")
    parser.add_argument("--shard", help="K/N: grade every N-th submission starting at the K-th")
    parser.add_argument("--force", action="store_true", help="grade every submission again, even where an earlier result in --out would do")
    parser.add_argument("--overrides", type=Path, metavar="FILE", help="a CSV student,check,points,reason applied last")
    parser.add_argument("--vms", choices=BACKENDS, default=UNPRIVILEGED,
                        help="unprivileged: LXD VMs whose root is not this machine's (default); "
                             "docker: the Docker VMs, root on this machine (needs --allow-privileged-vms)")
    parser.add_argument("--allow-privileged-vms", action="store_true",
                        help="grade on the Docker VMs although a submission there is root on this machine: trusted classes only")
    course = parser.add_argument_group("repositories")
    course.add_argument("--roster", type=Path, metavar="FILE", help="a CSV student,repo[,commit]: each student's repository, cloned now")
    course.add_argument("--deadline", metavar="ISO-8601",
                        help="e.g. 2021-05-24T13:59:00-03:00: grade each repository's last commit dated at or before it")
    course.add_argument("--late-policy", choices=LATE_POLICIES, default=ON_TIME,
                        help="on-time: the last commit before the deadline (default); grade-latest: the latest one, "
                             "with the rubric's late penalty")
    course.add_argument("--template", metavar="PATH|URL", help="the course's starting repository: list what else each student changed")
    return parser  # fmt: skip


def chosen_backend(args) -> str:
    """The VMs this class is graded on; the privileged ones only when asked for by name."""
    if args.vms == PRIVILEGED and not args.allow_privileged_vms:
        raise SubmissionError(
            "--vms docker runs each playbook as root on this machine, where it can change other submissions' "
            "grades; grade on --vms unprivileged, or pass --allow-privileged-vms for a class you trust"
        )
    if args.vms == UNPRIVILEGED and not lxd_available():
        raise SubmissionError(
            f"unprivileged VMs need LXD, and none runs here: {LXD_INSTALL_HINT} "
            "(or, for a class you trust, --vms docker --allow-privileged-vms)"
        )
    return args.vms


def build_collect_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog or "dcgan-harness grade collect",
        description="Clone or fetch every student's repository into a folder, and record when; grade the folder later.",
    )
    parser.add_argument("--roster", type=Path, required=True, metavar="FILE", help="a CSV student,repo[,commit]")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="the folder the bare copies and collection.json go to")
    parser.add_argument("--jobs", type=int, default=4, help="repositories fetched at once (default 4)")
    return parser


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
    backend = chosen_backend(args)
    rubric = load_rubric(args.rubric)
    check_app_dir(args.app_dir, "--app-dir")
    mnist_dir = args.mnist_dir or default_mnist_dir()
    mnist.verify_test_files(mnist_dir)
    if not args.submissions and args.roster is None:
        raise SubmissionError("nothing to grade: name submissions (files, folders, repositories) or pass --roster FILE")
    deadline = parse_deadline(args.deadline) if args.deadline else None
    if args.late_policy == GRADE_LATEST and deadline is None:
        raise SubmissionError("--late-policy grade-latest grades commits after a deadline: pass --deadline too")
    overrides = read_overrides(args.overrides, rubric) if args.overrides else []
    with tempfile.TemporaryDirectory(prefix="dcgan-grade-repos-") as tmp:
        # Clones of URLs live here only while their configure.yaml and history are read.
        template = load_template(args.template, Path(tmp)) if args.template else None
        window = rubric.late.max_days if rubric.late else None
        options = RepoOptions(Path(tmp), deadline, args.late_policy, window, template)
        submissions = find_submissions(args.submissions, args.roster, options)
    if args.shard:
        k, n = parse_shard(args.shard)
        submissions = shard(submissions, k, n)
        progress(f"grade: shard {k}/{n}: {len(submissions)} submission(s)")
    if not submissions:
        raise SubmissionError("no submissions to grade in this shard")
    for override in unmatched(overrides, [s.name for s in submissions]):
        progress(f"grade: --overrides line {override.line}: no submission named {override.student} here; not applied")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.force:
        for submission in submissions:
            reuse.forget(out / submission.name)
    reused = None if args.force else reuse_whole_class(submissions, rubric, args, timeout, Path(mnist_dir), out)
    if reused is not None:
        context, results = reused
        progress(f"grade: every submission's earlier result in {out} still holds; no VM needed (--force grades again)")
        class_run = SimpleNamespace(out_dir=out, rubric=rubric)  # all write_class_files reads of a run
    else:
        progress(f"grade: {len(submissions)} submission(s), mode {args.mode}, {args.jobs} at a time, results in {out}")
        class_run = start_grading(
            args.app_dir.resolve(), Path(mnist_dir), args.mode, timeout, rubric, out, backend=backend
        )
        progress(f"grade: run {class_run.grading_id}; `dcgan-harness cloud down` removes what an interrupted run leaves")
        try:
            results = grade_class(class_run, submissions, args.jobs)
        finally:
            down(class_run.grading_id, client=class_run.client)
        context = reuse.Context.of_run(class_run)
    finisher = Finisher(rubric, out, context, overrides)
    results = [finisher(submission, result) for submission, result in zip(submissions, results)]
    write_class_files(class_run, results)
    write_class_report(submissions, results, rubric, out, template.playbook if template else None)
    progress(f"grade: wrote {out}/grades.csv, junit.xml, index.html, similarity.csv and a results.json per submission")
    return 0


def reuse_whole_class(submissions: list[Submission], rubric: Rubric, args, timeout: float, mnist_dir: Path, out: Path):
    """(context, results) when every submission can take its earlier result; None when any needs grading."""
    if not any((out / submission.name / reuse.RECORD).is_file() for submission in submissions):
        return None
    context = reuse.Context(rubric, args.mode, timeout, reuse.offline_app_commit(args.app_dir.resolve(), mnist_dir, args.mode))
    results = []
    for index, submission in enumerate(submissions, 1):
        result = reuse.earlier_result(out / submission.name, submission, context)
        if result is None:
            progress(f"grade: {submission.name} changed since it was graded into {out}, or was never graded there")
            return None
        reuse.announce(result, index, len(submissions))
        results.append(result)
    return context, results


def write_class_report(submissions: list[Submission], results: list[SubmissionResult], rubric: Rubric, out: Path, template: bytes | None) -> None:
    playbooks = {s.name: s.playbook for s in submissions if s.playbook is not None}
    pairs = similarity.pairs(playbooks, template)
    write_atomically(out / similarity.FILENAME, similarity.render(pairs))
    report_html.write(results, rubric, out, pairs)


def collect_repositories(args: argparse.Namespace) -> int:
    if args.jobs < 1:
        raise SubmissionError(f"--jobs must be at least 1, not {args.jobs}")
    entries = read_roster(args.roster)
    out = args.out.resolve()
    progress(f"grade collect: {len(entries)} repositories into {out}")
    records = collect(entries, out, args.jobs)
    print(summary(records))
    collected = sum(1 for record in records if record["dir"])
    print(f"collected {collected} of {len(records)} repositories into {out}; grade them with `dcgan-harness grade {out}`")
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
    return run_command(lambda: _command(argv, prog), "interrupted; the VMs and controllers of this run were removed")


def _command(argv: list[str], prog: str | None) -> int:
    try:
        if argv and argv[0] == "merge":
            return merge(build_merge_parser(f"{prog} merge" if prog else None).parse_args(argv[1:]))
        if argv and argv[0] == "collect":
            return collect_repositories(build_collect_parser(f"{prog} collect" if prog else None).parse_args(argv[1:]))
        return grade(build_parser(prog).parse_args(argv))
    except OSError as error:
        raise HarnessError(f"{error.filename or ''}: {error.strerror or error}") from None

