"""Command line of the harness: a thin layer over the library modules.

Every subcommand turns the project's own errors into one line on stderr and
exit status 2, so users and grading scripts never see a bare traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from . import rules


class HarnessError(Exception):
    """A problem the user can fix; its message is one line naming cause and fix."""


def _check(args: argparse.Namespace) -> int:
    try:
        findings = rules.check_file(args.playbook)
    except rules.PlaybookError as error:
        raise HarnessError(str(error)) from None
    for finding in findings:
        print(finding.format(args.playbook))
    errors = [finding for finding in findings if finding.severity == rules.ERROR]
    advice = len(findings) - len(errors)
    advisories = f" and {advice} advisory finding(s)" if advice else ""
    if errors:
        print(f"{len(errors)} finding(s){advisories} in {args.playbook}", file=sys.stderr)
        return 1
    print(f"{args.playbook}: all {len(rules.RULE_IDS)} rules pass{advisories.replace(' and', ', with')}")
    return 0


# Subcommands that own their arguments: module and help line. Imported on use,
# so `check` stays fast and needs neither Docker nor boto3.
DELEGATED = {
    "run": ("localrun", "run configure.yaml on fresh local VMs and fetch output.txt"),
    "cloud": ("localcloud.command", "start, list and remove local VMs (up --nodes N, status, down)"),
    "parse": ("output", "parse an output.txt and say whether it holds complete epochs"),
    "mnist": ("mnist", "verify, subset or stage the MNIST test files"),
    "aws": ("aws", "check the AWS settings and that the instances match the course's VM spec"),
    "grade": ("grade.command", "grade students' configure.yaml end to end, sandboxed (grade merge DIR... joins shards)"),
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
    check.set_defaults(handler=_check)
    # Listed for --help only: main() hands their arguments over untouched.
    for name, (_, help_line) in DELEGATED.items():
        commands.add_parser(name, help=help_line, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv and argv[0] in DELEGATED:
            return _delegate(argv[0], argv[1:])
        args = build_parser().parse_args(argv)
        return args.handler(args)
    except HarnessError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
