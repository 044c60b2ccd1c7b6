"""`dcgan-harness grade collect`: a bare copy of every student's repository, and when it was made.

Run at the deadline, it fixes what each repository held then, which commit
dates cannot: the student's machine sets those. `grade DIR` later grades the
copies offline, taking the commit to grade from each copy as collected.
Collecting again into the same folder fetches what changed and moves each
repository's time; a repository that cannot be fetched keeps its earlier
copy and time, with the reason beside them.
"""

from __future__ import annotations

import csv
import io
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

from . import git, leaks
from .formats import printable, write_atomically
from .repos import (
    MANIFEST,
    MANIFEST_CSV,
    RosterEntry,
    iso,
    read_manifest,
    source_problem,
)
from .submission import clean_name, unique

MANIFEST_COLUMNS = ("student", "repo", "dir", "commit", "collected_at", "head", "error")


def collect(entries: list[RosterEntry], folder: Path, jobs: int = 4, now=lambda: datetime.now(timezone.utc)) -> list[dict]:
    """Clone or fetch each roster entry into folder/<student>.git; write the manifest; return its records."""
    folder.mkdir(parents=True, exist_ok=True)
    earlier = {str(e.get("student")): e for e in read_manifest(folder)} if (folder / MANIFEST).is_file() else {}
    names = unique([clean_name(entry.student) for entry in entries])

    def one(pair: tuple[RosterEntry, str]) -> dict:
        entry, name = pair
        return _collect_one(entry, name, folder, earlier.get(name), now)

    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="collect") as pool:
        records = list(pool.map(one, zip(entries, names)))
    write_manifest(folder, records)
    return records


def _collect_one(entry: RosterEntry, name: str, folder: Path, earlier: dict | None, now) -> dict:
    shown = git.without_credentials(entry.repo)
    destination = folder / f"{name}.git"
    record = {"student": name, "repo": shown, "dir": "", "commit": entry.commit, "collected_at": "", "head": "", "error": ""}
    started = now()
    try:
        problem = source_problem(entry.repo)
        if problem:
            raise git.GitError(problem)
        if git.is_repository(destination):
            git.fetch_all(destination, entry.repo)
        else:
            git.clone_bare(entry.repo, destination)
        # A push that landed after the fetch began may or may not be in: only the end is an upper bound.
        record.update(dir=destination.name, collected_at=iso(now()), head=git.head(destination) or "")
    except git.GitError as error:
        reason = printable(leaks.mask_secrets(str(error)))
        if earlier and earlier.get("dir") and git.is_repository(destination):
            record.update(dir=earlier["dir"], collected_at=earlier.get("collected_at", ""), head=earlier.get("head", ""),
                          error=f"fetch failed at {iso(started)} ({reason}); the copy collected at {earlier.get('collected_at')} is kept")  # fmt: skip
        else:
            record["error"] = f"cannot clone {shown}: {reason}"
    return record


def write_manifest(folder: Path, records: list[dict]) -> None:
    write_atomically(folder / MANIFEST, json.dumps({"repositories": records}, indent=2) + "\n")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    writer.writerows([printable(str(record.get(column, ""))) for column in MANIFEST_COLUMNS] for record in records)
    write_atomically(folder / MANIFEST_CSV, buffer.getvalue())


def summary(records: list[dict]) -> str:
    lines = []
    for record in records:
        state = f"{record['head'][:12]} at {record['collected_at']}" if record["dir"] else "not collected"
        lines.append(printable(f"{record['student']}: {state}" + (f" ({record['error']})" if record["error"] else "")))
    return "\n".join(lines)
