"""Command line of the harness: a thin layer over the library modules.

Every subcommand turns the project's own errors into one line on stderr and
exit status 2, so users and grading scripts never see a bare traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
from pathlib import Path

from . import rules
from .errors import HarnessError, run_command
from .rules import formats


def _check(args: argparse.Namespace) -> int:
    if args.list_rules:
        for rule in rules.RULES:
            print(f"{rule.id:24} {rule.severity:9} {rule.doc()}")
        return 0
    try:
        findings = rules.check_file(args.playbook)
    except rules.PlaybookError as error:
        raise HarnessError(str(error)) from None
    formatter = formats.FORMATS[args.format]()
    sys.stdout.write(formatter.render(findings, args.playbook))
    errors = [finding for finding in findings if finding.severity == rules.ERROR]
    advice = len(findings) - len(errors)
    advisories = f" and {advice} advisory finding(s)" if advice else ""
    if errors:
        print(f"{len(errors)} finding(s){advisories} in {args.playbook}", file=sys.stderr)
        return 1
    summary = f"{args.playbook}: all {len(rules.RULE_IDS)} rules pass{advisories.replace(' and', ', with')}"
    print(summary, file=sys.stdout if formatter.summary_on_stdout else sys.stderr)
    return 0


def _parse(args: argparse.Namespace) -> int:
    # Imported here: `check` needs neither the parser nor its dependencies.
    from . import output

    try:
        result = output.parse_output_file(args.path)
    except OSError as error:
        raise HarnessError(f"{args.path}: cannot read it ({error.strerror or error}); pass the path of an output.txt") from None
    expected = _expectations(args, output)
    print(f"{args.path}:")
    for line in output.summarize(result):
        print(f"  {line}")
    problems = output.check_complete(result, expected)
    for problem in problems:
        print(f"problem: {problem}")
    if not problems:
        print(
            f"complete: {expected.epochs} epoch(s) of {expected.iterations} iterations, world size"
            f" {expected.world_size}, rank(s) {', '.join(map(str, expected.expected_ranks))}"
        )
    return 1 if problems else 0


def _expectations(args: argparse.Namespace, output):
    """What the run was started with, as the caller says; the course's configuration by default."""
    try:
        expected = output.Expectations.from_settings(
            args.images, args.batch_size, world_size=args.world_size, epochs=args.epochs,
            ranks=tuple(args.ranks) if args.ranks else None,
        )
        if args.iterations is not None:
            expected = dataclasses.replace(expected, iterations=args.iterations)
        return dataclasses.replace(expected, dataset=args.dataset)
    except ValueError as error:
        raise HarnessError(f"{error}; fix the option") from None


def _add_parse_parser(commands) -> None:
    parse = commands.add_parser(
        "parse",
        help="parse an output.txt and say whether it holds the complete run that was asked for",
        description="Check an output.txt against the run's settings (the course's by default: 10,000 MNIST test"
        " images, batch 128, 1 epoch, world size 1, so 79 iterations). Nothing is taken from the file itself.",
    )
    parse.add_argument("path", type=Path, help="the output.txt to check")
    parse.add_argument("--epochs", type=int, default=1, help="epochs the run was started with (default 1)")
    parse.add_argument("--world-size", type=int, default=1, help="processes in the run (default 1)")
    parse.add_argument(
        "--rank", type=int, action="append", dest="ranks",
        help="a rank this file must hold; repeat for several (default: every rank of the world)",
    )
    parse.add_argument("--images", type=int, default=10_000, help="images trained on (default 10000, MNIST test)")
    parse.add_argument("--batch-size", type=int, default=128, help="batch size per rank (default 128)")
    parse.add_argument(
        "--iterations", type=int, default=None,
        help="iterations per epoch and rank (default: ceil(images / (world size x batch size)))",
    )
    parse.add_argument("--dataset", default="mnist", help="dataset the run must load (default mnist)")
    parse.set_defaults(handler=_parse)


# Subcommands that own their arguments: module and help line. Imported on use,
# so `check` stays fast and needs neither Docker nor boto3.
DELEGATED = {
    "run": ("localrun", "run configure.yaml on fresh local VMs and fetch output.txt"),
    "cloud": ("localcloud.command", "start, list and remove local VMs (up --nodes N, status, down)"),
    "mnist": ("mnist", "verify, subset or stage the MNIST test files"),
    "aws": ("aws", "check the AWS settings and that the instances match the course's VM spec"),
    "grade": ("grade.command", "grade students' configure.yaml end to end, sandboxed (grade collect fetches repositories, grade merge DIR... joins shards)"),
    "bench": ("bench", "time each phase of a fast local run and write a JSON report"),
    "report": ("report", "write report.json, losses.png and report.md for the runs in a results folder"),
}


def _delegate(command: str, rest: list[str]) -> int:
    module = importlib.import_module(f"{__package__}.{DELEGATED[command][0]}")
    return module.main(rest, prog=f"dcgan-harness {command}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dcgan-harness", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="run the playbook rules on a configure.yaml")
    check.add_argument("playbook", nargs="?", type=Path, default=Path("configure.yaml"))
    check.add_argument("--list-rules", action="store_true", help="list the rules, their severity and what each checks")
    check.add_argument(
        "--format", choices=list(formats.FORMATS), default="text",
        help="text for people (default), sarif for code scanning, github for annotations in GitHub Actions",
    )
    check.set_defaults(handler=_check)
    _add_parse_parser(commands)
    # Listed for --help only: main() hands their arguments over untouched.
    for name, (_, help_line) in DELEGATED.items():
        commands.add_parser(name, help=help_line, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in DELEGATED:
        return run_command(lambda: _delegate(argv[0], argv[1:]))
    return run_command(lambda: _dispatch(argv))


def _dispatch(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
