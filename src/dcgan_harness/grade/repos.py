"""Submissions the way the course collects them: configure.yaml pushed to each
student's copy of the course repository before a deadline.

A repository is a local clone, a bare repository, a URL (https, ssh, file),
a row of a roster (`student,repo[,commit]`), or a folder `grade collect`
filled. Each is cloned bare (nothing is checked out) and only configure.yaml
of one commit is read from it, as `git show <commit>:configure.yaml` would:
nothing else of the repository reaches the grader's Ansible.

Which commit: with --deadline, the last one on the default branch dated at
or before it (`on-time`), or the latest one (`grade-latest`), within the
rubric's late window; a roster's commit column pins one. The dates are
committer dates, which the student's machine sets: the time a repository
was collected is the only cut-off a student cannot move, and the feedback
says so.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from . import git, leaks
from .formats import printable
from .results import CommitRef, Provenance
from .submission import (
    MAX_PLAYBOOK_BYTES,
    PLAYBOOK_NAME,
    Submission,
    SubmissionError,
    clean_name,
    discover,
    load,
    name_of,
    unique_names,
)

ON_TIME = "on-time"
GRADE_LATEST = "grade-latest"
LATE_POLICIES = (ON_TIME, GRADE_LATEST)
ROSTER_COLUMNS = ("student", "repo", "commit")
MANIFEST = "collection.json"
MANIFEST_CSV = "collection.csv"
CLONE_JOBS = 4


@dataclass(frozen=True)
class Template:
    """The course's starting repository: its files, and its commits, which are not the students'."""

    source: str
    files: dict[str, tuple[str, str]]
    head: str
    playbook: bytes | None


@dataclass(frozen=True)
class RepoOptions:
    work_dir: Path  # where clones made for this grading go; removed afterwards
    deadline: datetime | None = None
    late_policy: str = ON_TIME
    late_window_days: int | None = None  # the rubric's late.max_days
    template: Template | None = None
    now: Callable[[], datetime] = field(default=lambda: datetime.now(timezone.utc))


@dataclass(frozen=True)
class RosterEntry:
    student: str
    repo: str
    commit: str
    line: int


def parse_deadline(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise SubmissionError(f"--deadline {text!r}: write a date, time and offset, e.g. --deadline 2021-05-24T13:59:00-03:00")
    return moment


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def read_roster(path: Path) -> list[RosterEntry]:
    """The roster's rows; repo paths relative to the roster's folder."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise SubmissionError(f"--roster {path}: cannot read it ({error.strerror}); pass a CSV file student,repo[,commit]") from None
    except UnicodeDecodeError:
        raise SubmissionError(f"--roster {path}: not UTF-8 text; save it as a UTF-8 CSV file student,repo[,commit]") from None
    rows = list(csv.reader(text.splitlines()))
    header = [cell.strip().lower() for cell in rows[0]] if rows else []
    if header not in (list(ROSTER_COLUMNS[:2]), list(ROSTER_COLUMNS)):
        raise SubmissionError(f"--roster {path}: its first line must be the header student,repo or student,repo,commit")
    entries = []
    for number, row in enumerate(rows[1:], 2):
        if not any(cell.strip() for cell in row):
            continue
        cells = [cell.strip() for cell in row] + [""] * 3
        if not cells[0] or not cells[1] or len(row) > len(header):
            raise SubmissionError(f"--roster {path}:{number}: write a student's name and repository, and at most a commit")
        repo = cells[1]
        if not git.is_url(repo) and "://" not in repo and "::" not in repo and not Path(repo).is_absolute():
            repo = str((path.parent / repo).resolve())
        entries.append(RosterEntry(cells[0], repo, cells[2] if len(header) == 3 else "", number))
    if not entries:
        raise SubmissionError(f"--roster {path}: lists no student; add a line student,repo per student")
    return entries


def source_problem(source: str) -> str:
    """Why a repository cannot be taken from source, or ""."""
    if git.is_url(source):
        return ""
    if "://" in source or "::" in source:
        return "only https://, ssh://, file://, user@host:path and local folders are cloned"
    if not Path(source).exists():
        return "no such repository or folder"
    if not git.is_repository(Path(source)):
        return "not a git repository (no .git)"
    return ""


def clone(source: str, work_dir: Path, name: str) -> Path:
    problem = source_problem(source)
    if problem:
        raise git.GitError(problem)
    for n in itertools.count(1):
        destination = work_dir / f"{name}-{n}.git"
        if not destination.exists():
            break
    git.clone_bare(source, destination)
    return destination


def load_template(source: str, work_dir: Path) -> Template:
    try:
        git_dir = clone(source, work_dir, "template")
        tip = git.head(git_dir)
        if tip is None:
            raise git.GitError("it has no commits")
        files = git.tree_entries(git_dir, tip)
        playbook = git.blob(git_dir, files[PLAYBOOK_NAME][1]) if PLAYBOOK_NAME in files else None
    except git.GitError as error:
        shown = git.without_credentials(source)
        raise SubmissionError(f"--template {shown}: {error}; pass the course's starting repository (a clone or its URL)") from None
    return Template(git.without_credentials(source), files, tip, playbook)


# --- Loading one repository ------------------------------------------------------------


def load_repository(name: str, source: str, options: RepoOptions, commit: str = "", collected: dict | None = None) -> Submission:
    """One submission from a repository; a repository that cannot be read is one with the reason.

    collected: the manifest's entry when source is a copy `grade collect` made, read where it is.
    """
    shown = str(collected["repo"]) if collected and collected.get("repo") else git.without_credentials(source)
    try:
        if collected is not None:
            git_dir = Path(source)
        else:
            git_dir = clone(source, options.work_dir, name)
        return _from_clone(name, shown, git_dir, options, commit, collected)
    except git.GitError as error:
        reason = printable(leaks.mask_secrets(f"cannot read the repository {shown}: {error}"))
        return Submission(name, shown, None, reason, Provenance(repository=shown, notes=(reason,)))


def _from_clone(name: str, shown: str, git_dir: Path, options: RepoOptions, pinned: str, collected: dict | None) -> Submission:
    tip = git.head(git_dir)
    if tip is None:
        problem = f"the repository {shown} has no commits: push configure.yaml"
        return Submission(name, shown, None, problem, Provenance(repository=shown, notes=(problem,)))
    commits = [_ref(commit) for commit in git.history(git_dir, tip)]
    deadline = options.deadline
    graded, late = choose(commits, tip, deadline, options.late_policy, options.late_window_days)
    if pinned:
        try:
            sha = git.resolve_commit(git_dir, pinned)
        except git.GitError as error:
            problem = printable(f"the roster's commit for {name}: {error}; correct the roster's commit column")
            return Submission(name, shown, None, problem, Provenance(repository=shown, notes=(problem,)))
        graded = next((c for c in commits if c.sha == sha), None) or _ref(git.history(git_dir, sha)[0])
    notes = list(_date_notes(git_dir, graded, late, deadline, collected, options))
    exclude = []
    if options.template and git.has_commit(git_dir, options.template.head):
        exclude = [options.template.head]
    scan = leaks.scan_history(git_dir, graded.sha if graded else None, exclude)
    if scan.unscanned:
        notes.append(f"not searched for credentials, being over 4 MiB: {', '.join(scan.unscanned[:5])}")
    days_late = _days_after(graded, deadline) if graded else 0
    origin = Provenance(
        repository=shown,
        graded=graded,
        deadline=iso(deadline) if deadline else "",
        late=tuple(late),
        days_late=days_late,
        collected_at=(collected or {}).get("collected_at", ""),
        changed_files=_changed_files(git_dir, graded, options.template) if graded else None,
        leaks=tuple(leak.describe() for leak in scan.leaks),
        commits_scanned=scan.commits,
        notes=tuple(printable(leaks.mask_secrets(note)) for note in notes),
    )
    if graded is None:
        first = commits[-1]
        problem = f"no commit dated at or before the deadline {iso(deadline)}; the first is {first.sha[:12]} of {first.date}"
        return Submission(name, shown, None, problem, origin)
    playbook, problem = _playbook_at(git_dir, graded.sha)
    return Submission(name, shown, playbook, problem, origin)


def _ref(commit: git.Commit) -> CommitRef:
    return CommitRef(commit.sha, commit.date, printable(leaks.mask_secrets(commit.subject))[:200])


def _date(commit: CommitRef) -> datetime:
    return datetime.fromisoformat(commit.date)


def choose(commits: list[CommitRef], tip: str, deadline: datetime | None, policy: str, window_days: int | None):
    """(the commit to grade or None, the commits dated after the deadline, oldest first)."""
    if deadline is None:
        return next(c for c in commits if c.sha == tip), []
    late = sorted((c for c in commits if _date(c) > deadline), key=_date)
    if policy == GRADE_LATEST:
        end = deadline + timedelta(days=window_days) if window_days else None
        tip_commit = next(c for c in commits if c.sha == tip)
        if end is None or _date(tip_commit) <= end:
            return tip_commit, late
        in_window = [c for c in commits if _date(c) <= end]
    else:
        in_window = [c for c in commits if _date(c) <= deadline]
    # max() keeps the first of equal dates, and --date-order lists children before parents.
    return (max(in_window, key=_date) if in_window else None), late


def _days_after(commit: CommitRef, deadline: datetime | None) -> int:
    if deadline is None or _date(commit) <= deadline:
        return 0
    return math.ceil((_date(commit) - deadline) / timedelta(days=1))


def _date_notes(git_dir: Path, graded, late, deadline, collected, options: RepoOptions) -> list[str]:
    if deadline is None:
        return []
    notes = ["commit dates are set by the student's machine and can be anything; "
             "what the repository held when it was collected is the trustworthy cut-off"]  # fmt: skip
    if collected and collected.get("collected_at"):
        at = datetime.fromisoformat(collected["collected_at"])
        notes.append(f"collected at {iso(at)}" + _after(at, deadline))
    else:
        now = options.now()
        notes.append(f"cloned at {iso(now)}{_after(now, deadline)}; `dcgan-harness grade collect` at the deadline keeps what it held then")
    if graded is not None and late and _date(graded) <= deadline:
        ancestors = {c.sha for c in git.history(git_dir, graded.sha)}
        odd = [c for c in late if c.sha in ancestors]
        if odd:
            notes.append(f"{len(odd)} commit(s) dated after the deadline come before the graded one in the history: its dates do not follow its order")
    if options.late_policy == GRADE_LATEST and options.late_window_days:
        end = deadline + timedelta(days=options.late_window_days)
        dropped = [c for c in late if _date(c) > end]
        if dropped:
            notes.append(f"{len(dropped)} commit(s) dated more than {options.late_window_days} day(s) after the deadline are not graded")
    return notes


def _after(moment: datetime, deadline: datetime) -> str:
    if moment <= deadline:
        return ", before the deadline"
    return f", {_span(moment - deadline)} after the deadline: a commit pushed in between with an earlier date counts as on time"


def _span(delta: timedelta) -> str:
    minutes = delta.total_seconds() / 60
    if minutes < 120:
        return f"{minutes:.0f} min"
    if minutes < 48 * 60:
        return f"{minutes / 60:.0f} h"
    return f"{minutes / 1440:.0f} days"


def _playbook_at(git_dir: Path, commit: str) -> tuple[bytes | None, str]:
    entry = git.tree_entries(git_dir, commit).get(PLAYBOOK_NAME)
    where = f"commit {commit[:12]}"
    if entry is None:
        return None, f"no {PLAYBOOK_NAME} at the top of the repository in {where}"
    mode, sha = entry
    if mode == "120000":
        return None, f"{PLAYBOOK_NAME} is a symbolic link in {where}; commit the file itself"
    if not mode.startswith("100"):
        return None, f"{PLAYBOOK_NAME} is not a file in {where}"
    if git.blob_sizes(git_dir, [sha]).get(sha, 0) > MAX_PLAYBOOK_BYTES:
        return None, f"{PLAYBOOK_NAME} in {where} is larger than {MAX_PLAYBOOK_BYTES >> 10} KiB"
    return git.blob(git_dir, sha), ""


def _changed_files(git_dir: Path, graded: CommitRef, template: Template | None) -> tuple[str, ...] | None:
    if template is None:
        return None
    mine = git.tree_entries(git_dir, graded.sha)
    theirs = template.files
    lines = []
    for path in sorted(set(mine) | set(theirs)):
        if path == PLAYBOOK_NAME:
            continue
        if path not in theirs:
            lines.append(f"added: {path}")
        elif path not in mine:
            lines.append(f"removed: {path}")
        elif mine[path] != theirs[path]:
            lines.append(f"changed: {path}")
    return tuple(printable(leaks.mask_secrets(line)) for line in lines)


# --- Many repositories -----------------------------------------------------------------


def name_for(source: str) -> str:
    """owner-repository for a hosted URL, since every student's copy has the course's repository name;
    the last part of a file:// URL or a folder's name otherwise."""
    if not git.is_url(source):
        return name_of(Path(source))
    shown = git.without_credentials(source)
    if shown.startswith("file://"):
        return name_of(Path(shown.removeprefix("file://")))
    if "://" in shown:
        parts = shown.split("://", 1)[1].split("/")[1:]  # without the host
    else:
        parts = shown.split(":", 1)[1].split("/")  # user@host:owner/repository
    parts = [part.removesuffix(".git") for part in parts if part.removesuffix(".git")]
    return clean_name("-".join(parts[-2:]))


def from_roster(entries: list[RosterEntry], options: RepoOptions) -> list[Submission]:
    def one(entry: RosterEntry) -> Submission:
        return load_repository(clean_name(entry.student), entry.repo, options, entry.commit)

    with ThreadPoolExecutor(max_workers=CLONE_JOBS, thread_name_prefix="clone") as pool:
        return list(pool.map(one, entries))


def is_collection(path: Path) -> bool:
    return path.is_dir() and (path / MANIFEST).is_file()


def read_manifest(folder: Path) -> list[dict]:
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        entries = data["repositories"]
        assert isinstance(entries, list) and all(isinstance(e, dict) and "student" in e for e in entries)
    except (OSError, ValueError, KeyError, TypeError, AssertionError):
        raise SubmissionError(f"{folder / MANIFEST}: not a manifest of `grade collect`; collect the class again into a new folder") from None
    return entries


def from_collection(folder: Path, options: RepoOptions) -> list[Submission]:
    """The repositories `grade collect` left in folder, as they were when collected."""
    submissions = []
    for entry in read_manifest(folder):
        name = clean_name(str(entry["student"]))
        clone_dir = folder / str(entry.get("dir") or "")
        shown = str(entry.get("repo", ""))
        if not entry.get("dir") or not git.is_repository(clone_dir) or clone_dir.resolve().parent != folder.resolve():
            reason = printable(f"not collected: {entry.get('error') or 'no clone in ' + str(folder)}")
            submissions.append(Submission(name, shown, None, reason, Provenance(repository=shown, notes=(reason,))))
            continue
        submissions.append(load_repository(name, str(clone_dir), options, str(entry.get("commit") or ""), collected=entry))
    return submissions


class Loader:
    """What discover() calls for each entry: a git repository as a repository, anything else as before."""

    def __init__(self, options: RepoOptions):
        self.options = options

    def __call__(self, path: Path) -> Submission:
        if not git.is_repository(path):
            return load(path)
        collected = None
        if is_collection(path.parent):
            collected = next((e for e in read_manifest(path.parent) if e.get("dir") == path.name), None)
        if collected is not None:
            return load_repository(name_of(path), str(path), self.options, str(collected.get("commit") or ""), collected)
        return load_repository(name_of(path), str(path.resolve()), self.options)


def find_submissions(arguments: list[str], roster: Path | None, options: RepoOptions) -> list[Submission]:
    """Every submission the command line names, in its order, the roster's last, with unique names."""
    found: list[Submission] = []
    loader = Loader(options)
    for argument in arguments:
        path = Path(argument)
        if git.is_url(argument):
            found.append(load_repository(name_for(argument), argument, options))
        elif is_collection(path):
            found += from_collection(path, options)
        elif git.is_repository(path):
            found.append(loader(path))
        else:
            found += discover([path], loader)
    if roster is not None:
        found += from_roster(read_roster(roster), options)
    return unique_names(found)
