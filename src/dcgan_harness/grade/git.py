"""git on students' repositories, run so that nothing of theirs runs here.

Every call has a deadline and never prompts (a private repository without
credentials fails at once instead of waiting for a password). Repositories
are cloned bare, so no student file is ever checked out; hooks and
fsmonitor are switched off, since a local clone handed to `grade` carries
its own .git/config. Only a clone made here is ever read with `--git-dir`:
a student's own repository is only a source to clone from.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import HarnessError

# A clone or fetch of a course repository takes seconds; a minute and more
# means a dead host or a repository far larger than an assignment.
NETWORK_TIMEOUT_S = 120
LOCAL_TIMEOUT_S = 60
SAFE_CONFIG = (
    "-c", "core.hooksPath=/dev/null",
    "-c", "core.fsmonitor=false",
    "-c", "protocol.ext.allow=never",
    "-c", "credential.interactive=never",
)  # fmt: skip
# What a repository may be given as: https, ssh (URL or scp-like), file, or a local folder.
URL_SCHEMES = ("https://", "ssh://", "file://")
SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:(?!//)\S+$")
USERINFO = re.compile(r"(?P<scheme>\b[a-z+]+://)[^/@\s'\"]*@")
# Environment that would point git elsewhere than the repository it is given.
REPOSITORY_ENV = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES",
                  "GIT_NAMESPACE", "GIT_CEILING_DIRECTORIES", "GIT_CONFIG_PARAMETERS", "GIT_CONFIG_COUNT")  # fmt: skip


class GitError(HarnessError):
    """A git command failed; the message is git's own last line, or the timeout."""


@dataclass(frozen=True)
class Commit:
    sha: str
    date: str  # the committer date, ISO 8601 with the committer's offset
    subject: str


def is_url(text: str) -> bool:
    return text.startswith(URL_SCHEMES) or bool(SCP_LIKE.match(text))


def is_repository(path: Path) -> bool:
    """A clone (a folder holding .git) or a bare repository."""
    if (path / ".git").exists():
        return True
    return path.is_dir() and (path / "HEAD").is_file() and (path / "objects").is_dir() and (path / "refs").is_dir()


def without_credentials(url: str) -> str:
    """The URL, or a message naming URLs, as outputs may show it: a token in https://user:token@host/... stays here."""
    return USERINFO.sub(lambda match: match.group("scheme"), url)


def environment() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in REPOSITORY_ENV}
    env.update(GIT_TERMINAL_PROMPT="0", GCM_INTERACTIVE="never", LC_ALL="C", GIT_ASKPASS="/bin/false", SSH_ASKPASS="/bin/false")
    # BatchMode: keys and agents still work, a password or host-key prompt fails.
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes -o ConnectTimeout=30")
    return env


def run_git(args: list[str], git_dir: Path | None = None, timeout: float = LOCAL_TIMEOUT_S, stdin: bytes | None = None) -> bytes:
    """git's stdout; GitError with its last line of stderr when it fails or runs past timeout."""
    where = ["--git-dir", str(git_dir)] if git_dir is not None else []
    argv = ["git", *SAFE_CONFIG, *where, *args]
    # A session of its own: a timeout kills the ssh or https helper git started, and their pipes close.
    process = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment(),
        start_new_session=True,
    )
    try:
        out, err = process.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise GitError(f"`git {args[0]}` did not finish within {timeout:.0f}s") from None
    if process.returncode != 0:
        lines = [line for line in err.decode("utf-8", "replace").splitlines() if line.strip()]
        last = re.sub(r"^(fatal|error): ", "", lines[-1].strip()) if lines else f"`git {args[0]}` exited {process.returncode}"
        raise GitError(without_credentials(last))
    return out


def clone_bare(source: str, destination: Path, timeout: float = NETWORK_TIMEOUT_S) -> None:
    """A bare copy of every branch and tag: nothing is checked out, and no token stays in its config."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    run_git(["clone", "--bare", "--quiet", "--", source, str(destination)], timeout=timeout)
    run_git(["config", "remote.origin.url", without_credentials(source)], destination)


def fetch_all(git_dir: Path, source: str, timeout: float = NETWORK_TIMEOUT_S) -> None:
    """Bring a bare clone up to date with source, force-pushed and deleted branches included."""
    refspecs = ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"]
    run_git(["fetch", "--quiet", "--prune", "--no-write-fetch-head", "--", source, *refspecs], git_dir, timeout)
    head = run_git(["ls-remote", "--symref", "--", source, "HEAD"], git_dir, timeout).decode("utf-8", "replace")
    match = re.search(r"^ref: (refs/heads/\S+)\s+HEAD$", head, re.M)
    if match:  # the default branch may have changed since the clone
        run_git(["symbolic-ref", "HEAD", match.group(1)], git_dir)


def head(git_dir: Path) -> str | None:
    try:
        return run_git(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], git_dir).decode().strip() or None
    except GitError:
        return None


def history(git_dir: Path, tip: str = "HEAD") -> list[Commit]:
    """Every commit reachable from tip, newest committer date first."""
    raw = run_git(["log", "--date-order", "-z", "--format=%H%x1f%cI%x1f%s", tip, "--"], git_dir)
    commits = []
    for record in raw.decode("utf-8", "replace").split("\0"):
        parts = record.strip("\n").split("\x1f", 2)
        if len(parts) == 3:
            commits.append(Commit(*parts))
    return commits


def resolve_commit(git_dir: Path, name: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{4,40}", name):
        raise GitError(f"{name!r} is not a commit id (4 to 40 hexadecimal digits)")
    try:
        return run_git(["rev-parse", "--verify", "--quiet", f"{name}^{{commit}}"], git_dir).decode().strip()
    except GitError:
        raise GitError(f"no commit {name} in the repository") from None


def tree_entries(git_dir: Path, commit: str) -> dict[str, tuple[str, str]]:
    """path -> (mode, object id) of every file in the commit."""
    raw = run_git(["ls-tree", "-r", "-z", "--full-tree", commit], git_dir)
    entries = {}
    for record in raw.split(b"\0"):
        if not record:
            continue
        meta, _, path = record.partition(b"\t")
        mode, _kind, sha = meta.decode().split()
        entries[path.decode("utf-8", "surrogateescape")] = (mode, sha)
    return entries


def blob(git_dir: Path, sha: str) -> bytes:
    return run_git(["cat-file", "blob", sha], git_dir)


def blob_sizes(git_dir: Path, shas: list[str]) -> dict[str, int]:
    if not shas:
        return {}
    raw = run_git(["cat-file", "--batch-check=%(objectname) %(objecttype) %(objectsize)"], git_dir, stdin="\n".join(shas).encode() + b"\n")
    sizes = {}
    for line in raw.decode().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == "blob":
            sizes[parts[0]] = int(parts[2])
    return sizes


def blobs(git_dir: Path, shas: list[str]) -> dict[str, bytes]:
    """Many blobs through one `git cat-file --batch`."""
    if not shas:
        return {}
    raw = run_git(["cat-file", "--batch"], git_dir, stdin="\n".join(shas).encode() + b"\n")
    found, position = {}, 0
    while position < len(raw):
        end = raw.index(b"\n", position)
        header = raw[position:end].decode().split()
        position = end + 1
        if len(header) != 3:  # "<sha> missing"
            continue
        size = int(header[2])
        found[header[0]] = raw[position : position + size]
        position += size + 1
    return found


@dataclass(frozen=True)
class Change:
    commit: str
    date: str
    path: str
    blob: str  # the file's content after the commit; all zeros when the commit deleted it
    mode: str


def changes(git_dir: Path, refs: list[str], exclude: list[str] = ()) -> list[Change]:
    """Every file each commit reachable from refs added, changed or deleted, merges against each parent."""
    args = ["log", "-m", "--no-renames", "--raw", "--no-abbrev", "-z", "--format=%x1e%H %cI", *refs]
    args += [f"^{sha}" for sha in exclude]
    raw = run_git([*args, "--"], git_dir).decode("utf-8", "surrogateescape")
    found: list[Change] = []
    commit = date = ""
    tokens = iter(raw.split("\0"))
    for token in tokens:
        token = token.lstrip("\n")
        if token.startswith("\x1e"):
            commit, _, date = token[1:].partition(" ")
        elif token.startswith(":"):
            _old_mode, new_mode, _old_sha, new_sha, _status = token[1:].split()
            found.append(Change(commit, date, next(tokens, ""), new_sha, new_mode))
    return found


def messages(git_dir: Path, refs: list[str], exclude: list[str] = ()) -> list[tuple[str, str, str]]:
    """(commit, date, full message) of every commit reachable from refs."""
    raw = run_git(["log", "-z", "--format=%H%x1f%cI%x1f%B", *refs, *[f"^{sha}" for sha in exclude], "--"], git_dir)
    found = []
    for record in raw.decode("utf-8", "replace").split("\0"):
        parts = record.split("\x1f", 2)
        if len(parts) == 3:
            found.append((parts[0].strip(), parts[1], parts[2]))
    return found


def all_refs(git_dir: Path) -> list[str]:
    raw = run_git(["for-each-ref", "--format=%(objectname)"], git_dir).decode()
    return sorted(set(raw.split())) or ["HEAD"]


def has_commit(git_dir: Path, sha: str) -> bool:
    try:
        run_git(["cat-file", "-e", f"{sha}^{{commit}}"], git_dir)
        return True
    except GitError:
        return False
