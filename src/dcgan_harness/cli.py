"""Command line of the harness: a thin layer over the library modules.

Every subcommand turns the project's own errors into one line on stderr and
exit status 2, so users and grading scripts never see a bare traceback.
"""

from __future__ import annotations

import argparse
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
    if findings:
        print(f"{len(findings)} finding(s) in {args.playbook}", file=sys.stderr)
        return 1
    print(f"{args.playbook}: all {len(rules.RULE_IDS)} rules pass")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dcgan-harness", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="run the playbook rules on a configure.yaml")
    check.add_argument("playbook", nargs="?", type=Path, default=Path("configure.yaml"))
    check.set_defaults(handler=_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except HarnessError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
