"""Finding the submissions to grade: configure.yaml files, folders, archives, classes.

Only a submission's configure.yaml is graded, as the course says; whatever
lies beside it (ansible.cfg, plugins, roles, other files) is never read, so
nothing of it can reach the grader's Ansible. Archives are not unpacked: the
one member named configure.yaml is read out of them.
"""

from __future__ import annotations

import itertools
import re
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from ..errors import HarnessError
from .formats import RESERVED_NAMES
from .results import Provenance

PLAYBOOK_NAME = "configure.yaml"
ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")
PLAYBOOK_SUFFIXES = (".yaml", ".yml")
# A student's playbook is a few kilobytes; anything far larger is not one.
MAX_PLAYBOOK_BYTES = 1024 * 1024
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
# A name is a folder of --out: well below any file system's 255, with room for a -N suffix.
MAX_NAME_CHARS = 100


class SubmissionError(HarnessError):
    """A submission that cannot be graded; the message names it and the fix."""


@dataclass(frozen=True)
class Submission:
    name: str
    source: Path
    playbook: bytes | None  # None when the submission holds no configure.yaml
    problem: str = ""  # why playbook is None
    # For a git repository: the commit graded, the late ones, what its history holds.
    origin: Provenance | None = None


def name_of(path: Path) -> str:
    """The file's stem, the folder's name, the archive's name without its suffixes.

    A file named configure.yaml takes its folder's name: every student's has that stem.
    """
    name = path.resolve().parent.name if path.name == PLAYBOOK_NAME and path.is_file() else path.name
    for suffix in ARCHIVE_SUFFIXES + PLAYBOOK_SUFFIXES + (".git",):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    return clean_name(name)


def clean_name(name: str) -> str:
    """A name usable as a folder of --out on any file system."""
    return SAFE_NAME.sub("_", name).strip("._")[:MAX_NAME_CHARS].strip("._") or "submission"


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def is_playbook_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in PLAYBOOK_SUFFIXES


def discover(paths: list[Path], loader: Callable[[Path], Submission] | None = None) -> list[Submission]:
    """Every submission the paths name, in a stable order, with unique names.

    A folder holding configure.yaml is one submission; any other folder is a
    class: each of its entries (a .yaml file, a folder, an archive) is one.
    loader reads one entry (repos.py's also reads git repositories).
    """
    load_one = loader or load
    found: list[Submission] = []
    for path in paths:
        if not path.exists():
            raise SubmissionError(f"{path}: no such file or folder; pass configure.yaml files, folders or archives")
        if path.is_dir() and not (path / PLAYBOOK_NAME).is_file():
            entries = sorted(p for p in path.iterdir() if not p.name.startswith("."))
            members = [p for p in entries if p.is_dir() or is_archive(p) or is_playbook_file(p)]
            if not members:
                raise SubmissionError(f"{path}: holds neither {PLAYBOOK_NAME} nor submissions; pass a folder of submissions")
            found += [load_one(member) for member in members]
        else:
            found.append(load_one(path))
    return unique_names(found)


def load(path: Path) -> Submission:
    name = name_of(path)
    if path.is_dir():
        return _from_file(name, path, path / PLAYBOOK_NAME)
    if is_archive(path):
        return _from_archive(name, path)
    if is_playbook_file(path):
        return _from_file(name, path, path)
    return Submission(name, path, None, f"{path.name} is neither a .yaml file, a folder nor a .zip/.tar.gz archive")


def _from_file(name: str, source: Path, playbook: Path) -> Submission:
    if not playbook.is_file():
        return Submission(name, source, None, f"no {PLAYBOOK_NAME} in {source}")
    if playbook.stat().st_size > MAX_PLAYBOOK_BYTES:
        return Submission(name, source, None, f"{playbook} is larger than {MAX_PLAYBOOK_BYTES >> 10} KiB")
    return Submission(name, source, playbook.read_bytes())


def _from_archive(name: str, archive: Path) -> Submission:
    try:
        content = _read_playbook_member(archive)
    except (OSError, zipfile.BadZipFile, tarfile.TarError) as error:
        return Submission(name, archive, None, f"{archive.name} cannot be opened as an archive ({error})")
    if content is None:
        return Submission(name, archive, None, f"no {PLAYBOOK_NAME} inside {archive.name}")
    return Submission(name, archive, content)


def _read_playbook_member(archive: Path) -> bytes | None:
    """The shallowest member named configure.yaml, read without unpacking anything else."""
    if archive.name.lower().endswith(".zip"):
        with zipfile.ZipFile(archive) as bundle:
            members = [i for i in bundle.infolist() if not i.is_dir() and _is_playbook_member(i.filename)]
            if not members:
                return None
            chosen = min(members, key=lambda i: (len(PurePosixPath(i.filename).parts), i.filename))
            if chosen.file_size > MAX_PLAYBOOK_BYTES:
                return None
            return bundle.read(chosen)
    with tarfile.open(archive) as bundle:
        members = [m for m in bundle.getmembers() if m.isfile() and _is_playbook_member(m.name)]
        if not members:
            return None
        chosen = min(members, key=lambda m: (len(PurePosixPath(m.name).parts), m.name))
        if chosen.size > MAX_PLAYBOOK_BYTES:
            return None
        handle = bundle.extractfile(chosen)
        return handle.read() if handle else None


def _is_playbook_member(member: str) -> bool:
    parts = PurePosixPath(member).parts
    # macOS archives carry resource forks (__MACOSX/._configure.yaml) beside the real file.
    return bool(parts) and parts[-1] == PLAYBOOK_NAME and "__MACOSX" not in parts


def unique_names(submissions: list[Submission]) -> list[Submission]:
    """Each submission's own name where no earlier one took it, else the first NAME-2, NAME-3...
    that no submission's own name, no name given before and no class file of --out takes.

    So ana/configure.yaml, ana-2.yaml and ana.yaml become ana, ana-2 and
    ana-3, and grades.csv.yaml becomes grades.csv-2. Names compare without
    case: on macOS and Windows, Ana and ana are one folder.
    """
    names = unique([submission.name for submission in submissions])
    return [replace(submission, name=name) for submission, name in zip(submissions, names)]


def unique(names: list[str]) -> list[str]:
    """The names made unique the way unique_names says."""
    taken = {name.casefold() for name in names} | RESERVED_NAMES
    given: set[str] = set()
    result = []
    for own in names:
        name = own
        if name.casefold() in given or name.casefold() in RESERVED_NAMES:
            candidates = (f"{own}-{n}" for n in itertools.count(2))
            name = next(candidate for candidate in candidates if candidate.casefold() not in taken)
        given.add(name.casefold())
        taken.add(name.casefold())
        result.append(name)
    return result


def parse_shard(text: str) -> tuple[int, int]:
    """K/N: grade every N-th submission starting at the K-th (1-based)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise SubmissionError(f"--shard {text!r}: write K/N with 1 <= K <= N, e.g. --shard 2/4")
    return int(match.group(1)), int(match.group(2))


def shard(submissions: list[Submission], k: int, n: int) -> list[Submission]:
    return submissions[k - 1 :: n]
