"""Credentials a student committed: files that must never be in the repository
(vars.sh, keys, .aws/) and AWS keys inside any file or commit message, in
every commit reachable from any branch or tag, deleted later or not.

A deleted file is still in the history, and whoever clones the repository
gets it: the key must be rotated whatever the last commit holds. A finding
names the file and the commit, never the secret: `mask` keeps its first
four characters, and every format of the grader passes its text through
`mask_secrets` on the way out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import PurePosixPath

from . import git

# The course's vars.sh holds the student's AWS key; key.pem their EC2 key pair's private key.
FORBIDDEN_NAMES = ("vars.sh",)
FORBIDDEN_SUFFIXES = (".pem",)
FORBIDDEN_FOLDERS = (".aws",)
ACCESS_KEY_ID = re.compile(rb"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])")
# A secret access key is 40 characters of base64. Alone, so is many a hash,
# so only one written where a secret is named counts: an assignment to
# aws_secret_access_key (any spelling of it), or a token on a line that says "secret".
SECRET_ASSIGNMENT = re.compile(rb"(?i)aws_?secret_?(?:access_?)?key\W{0,6}([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])")
SECRET_TOKEN = re.compile(rb"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
SECRET_WORD = re.compile(rb"(?i)secret")
# A blob larger than this is not read; such a file is a finding of its own.
MAX_SCANNED_BYTES = 4 * 1024 * 1024
MASK = "****"
# Every secret found in this process: masked wherever else it turns up (a
# commit subject, a file name), whatever surrounds it there.
_KNOWN: set[str] = set()


def mask(secret: str) -> str:
    _KNOWN.add(secret)
    return secret[:4] + MASK


def looks_like_secret(token: bytes) -> bool:
    """Mixed case and a digit or symbol, as 40 random base64 characters are; a git or sha1 hash is lowercase hex."""
    return any(c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZ" for c in token) and any(c in b"abcdefghijklmnopqrstuvwxyz" for c in token) \
        and any(c in b"0123456789/+" for c in token)  # fmt: skip


def secrets_in(data: bytes) -> list[tuple[int, str, str]]:
    """(line, what, secret) for each credential in data; line is 1-based."""
    found = []
    for number, line in enumerate(data.split(b"\n"), 1):
        for match in ACCESS_KEY_ID.finditer(line):
            found.append((number, "an AWS access key id", match.group().decode()))
        secrets = {m.group(1) for m in SECRET_ASSIGNMENT.finditer(line)}
        if SECRET_WORD.search(line):
            secrets |= set(SECRET_TOKEN.findall(line))
        for secret in sorted(secret for secret in secrets if looks_like_secret(secret)):
            found.append((number, "an AWS secret access key", secret.decode()))
    return found


def mask_secrets(text: str) -> str:
    """text with every credential secrets_in finds written as its first four characters and ****."""
    if not text:
        return text
    for secret in [known for known in list(_KNOWN) if known in text]:
        text = text.replace(secret, mask(secret))
    if "AKIA" in text or "ASIA" in text or SECRET_WORD.search(text.encode("utf-8", "surrogatepass")):
        for _line, _what, secret in secrets_in(text.encode("utf-8", "surrogatepass")):
            text = text.replace(secret, mask(secret))
    return text


def mask_file(path) -> bool:
    """Mask the credentials in a file the grader wrote (a copy of the playbook, a log); whether it held any."""
    data = path.read_bytes()
    text = data.decode("utf-8", "surrogateescape")
    masked = mask_secrets(text)
    if masked == text:
        return False
    path.write_bytes(masked.encode("utf-8", "surrogateescape"))
    return True


def forbidden_reason(path: str) -> str:
    parts = PurePosixPath(path).parts
    name = parts[-1] if parts else path
    if name in FORBIDDEN_NAMES:
        return f"{name} holds your AWS access key and secret"
    if name.lower().endswith(FORBIDDEN_SUFFIXES):
        return "a private key (.pem)"
    if any(part in FORBIDDEN_FOLDERS for part in parts[:-1]):
        return "AWS credentials (.aws/)"
    return ""


@dataclass(frozen=True)
class Leak:
    """One credential in the history: where, since which commit, and whether the graded commit still holds it."""

    path: str  # the file, or "" for a commit message
    commit: str
    date: str
    what: str
    line: int = 0
    in_graded: bool = False

    def describe(self) -> str:
        where = f"{self.path}:{self.line}" if self.path and self.line else self.path or "the commit message"
        state = "still in the graded commit" if self.in_graded else "not in the graded commit, but still in the history"
        if not self.path:
            state = "in the history"
        return mask_secrets(f"{where} (commit {self.commit[:12]}, {self.date}): {self.what}; {state}")


@dataclass(frozen=True)
class Scan:
    leaks: tuple[Leak, ...]
    commits: int = 0  # how many were searched
    unscanned: tuple[str, ...] = ()  # files too large to read


def scan_history(git_dir, graded: str | None, exclude: list[str] = ()) -> Scan:
    """Every credential reachable from any ref, each reported once, at the commit that brought it in.

    exclude: commits of the course's template, which are not the student's.
    """
    refs = git.all_refs(git_dir)
    changes = [c for c in git.changes(git_dir, refs, exclude) if c.mode not in ("160000", "000000") and set(c.blob) != {"0"}]
    changes.sort(key=lambda change: _moment(change.date))  # the earliest commit that brought each in
    graded_files = {(path, sha) for path, (_mode, sha) in git.tree_entries(git_dir, graded).items()} if graded else set()
    graded_paths = {path for path, _sha in graded_files}
    leaks: dict[tuple, Leak] = {}
    for change in changes:
        reason = forbidden_reason(change.path)
        if reason:
            leaks.setdefault(
                ("file", change.path),
                Leak(change.path, change.commit, change.date, f"a file that must never be committed ({reason})",
                     in_graded=change.path in graded_paths),
            )  # fmt: skip
    sizes = git.blob_sizes(git_dir, sorted({c.blob for c in changes}))
    small = sorted(sha for sha, size in sizes.items() if size <= MAX_SCANNED_BYTES)
    unscanned = sorted({mask_secrets(c.path) for c in changes if sizes.get(c.blob, 0) > MAX_SCANNED_BYTES})
    contents = git.blobs(git_dir, small)
    in_graded = {secret for _path, sha in graded_files for _line, _what, secret in secrets_in(contents.get(sha, b""))}
    for change in changes:
        data = contents.get(change.blob)
        if data is None:
            continue
        for line, what, secret in secrets_in(data):
            leaks.setdefault(
                ("secret", secret),
                Leak(change.path, change.commit, change.date, f"{what} {mask(secret)}", line, secret in in_graded),
            )
    messages = git.messages(git_dir, refs, exclude)
    for commit, date, message in messages:
        for _line, what, secret in secrets_in(message.encode("utf-8", "surrogatepass")):
            leaks.setdefault(("secret", secret), Leak("", commit, date, f"{what} {mask(secret)}"))
    ordered = sorted(leaks.values(), key=lambda leak: (_moment(leak.date), leak.path, leak.line))
    return Scan(tuple(ordered), len(messages), tuple(unscanned))


def _moment(date: str) -> datetime:
    try:
        return datetime.fromisoformat(date)
    except ValueError:  # git always writes ISO 8601; a broken commit sorts first
        return datetime.min.replace(tzinfo=timezone.utc)


def scan_bytes(data: bytes, name: str = "configure.yaml") -> list[str]:
    """Findings for one file that has no history (a submission handed in as a file)."""
    return [mask_secrets(f"{name}:{line}: {what} {mask(secret)}") for line, what, secret in secrets_in(data)]
