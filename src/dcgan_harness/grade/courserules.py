"""The course's submission rules as checks: only configure.yaml is submitted,
and no credential is ever committed.

Both are decided from the repository before any VM, and say what they found
whatever their points (0 by default: feedback only). A submission handed in
as a file has no history; its configure.yaml is still searched for keys.
"""

from __future__ import annotations

from .leaks import scan_bytes
from .results import FAILED, PASSED, CheckResult
from .rubric import Rubric
from .submission import Submission

ROTATE = ("deleting a file does not remove it from the history, which anyone with the repository can read: "
          "deactivate the key in the AWS console (IAM > Users > Security credentials) and make a new one")  # fmt: skip


def submission_checks(rubric: Rubric, submission: Submission) -> list[CheckResult]:
    checks = []
    files, credentials = rubric.rule("files"), rubric.rule("credentials")
    if files:
        checks.append(_check(files, *files_feedback(submission)))
    if credentials:
        checks.append(_check(credentials, *credentials_feedback(submission)))
    return checks


def leak_lines(submission: Submission) -> list[str]:
    if submission.origin is not None:
        return list(submission.origin.leaks)
    return scan_bytes(submission.playbook) if submission.playbook else []


def files_feedback(submission: Submission) -> tuple[bool, list[str]]:
    origin = submission.origin
    if origin is None:
        return True, ["handed in as a file, not a repository: there are no other files to compare"]
    if origin.graded is None:
        return False, ["no commit was graded: nothing to compare with the course's repository"]
    if origin.changed_files is None:
        return True, ["not compared with the course's repository: grade with --template to list the other files changed"]
    if not origin.changed_files:
        return True, ["only configure.yaml differs from the course's repository"]
    count = len(origin.changed_files)
    return False, [f"{count} file(s) other than configure.yaml differ from the course's repository; submit configure.yaml only:",
                   *[f"  {line}" for line in origin.changed_files]]  # fmt: skip


def credentials_feedback(submission: Submission) -> tuple[bool, list[str]]:
    found = leak_lines(submission)
    if submission.origin is not None and not submission.origin.commits_scanned and not found:
        return False, ["not checked: the repository could not be read"]
    if submission.origin is None:
        where = "configure.yaml"
    else:
        where = f"the {submission.origin.commits_scanned} commit(s) of every branch and tag"
    if not found:
        return True, [f"no credentials found in {where}"]
    lines = [f"security: {len(found)} credential(s) in {where}; keep vars.sh and key.pem out of git (.gitignore):"]
    return False, lines + [f"  {line}" for line in found] + [ROTATE]


def _check(rule, ok: bool, feedback: list[str]) -> CheckResult:
    return CheckResult(rule.id, rule.name, rule.points if ok else 0.0, rule.points, PASSED if ok else FAILED, feedback)
