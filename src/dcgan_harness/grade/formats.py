"""The formats graders use, each a small class over the one result model:
Gradescope's results.json per submission, grades.csv and junit.xml per
class, and the table printed at the end. `merge` joins the CSV and JUnit
files of shards graded on several machines.

Every text a submission can put in a result (its task names, what its
commands printed) goes through `printable` on the way out, so no output
carries a terminal's escape sequences, a stray line break, a character XML
cannot hold, or an AWS credential (masked to its first four characters).
A class graded from repositories gets the columns graded_commit, late and
leaked_credentials as well.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from .leaks import mask_secrets
from .results import ERROR, PASSED, SubmissionResult, format_points

CSV_FIXED = ("submission", "score", "max_score")
CSV_SECONDS = "seconds"
CSV_REPOSITORY = ("graded_commit", "late", "leaked_credentials")
PARTIAL_SUFFIX = ".partial"
# C0 controls, DEL and C1 controls (a terminal acts on them; XML 1.0 cannot
# hold most of them even escaped), the line and paragraph separators that
# str.splitlines() breaks at, the lone surrogates an undecodable file name
# becomes, and U+FFFE/U+FFFF, which XML forbids too.
UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufffe\uffff]")
NAMED_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def printable(text: str, multiline: bool = False) -> str:
    """text with each character UNPRINTABLE matches written as a visible escape (\\x1b, \\ud800).

    multiline keeps newlines and tabs, for the fields that show several lines.
    """
    kept = "\n\t" if multiline else ""

    def escape(match: re.Match) -> str:
        char = match.group()
        if char in kept:
            return char
        code = ord(char)
        return NAMED_ESCAPES.get(char) or (f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}")

    return UNPRINTABLE.sub(escape, mask_secrets(str(text)))


def from_repositories(results: list[SubmissionResult]) -> bool:
    """Whether the class's files get the repository columns."""
    return any(result.provenance is not None or result.leaked_credentials for result in results)


def repository_cells(result: SubmissionResult) -> list[str]:
    origin = result.provenance
    graded = origin.graded.sha if origin and origin.graded else ""
    late = "; ".join(f"{c.sha[:12]} {c.date} {c.subject}" for c in origin.late) if origin else ""
    return [graded, printable(late), str(result.leaked_credentials)]


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


class GradescopeJson:
    """results.json as Gradescope's autograder reads it."""

    filename = "results.json"

    def render(self, result: SubmissionResult, visibility: str = "visible") -> str:
        document = {
            "score": result.score,
            "execution_time": round(result.seconds),
            "output": printable("\n".join(result.summary_lines), multiline=True),
            "visibility": visibility,
            "tests": [
                {
                    "name": printable(check.name),
                    "score": check.score,
                    "max_score": check.max_score,
                    "status": "passed" if check.outcome == PASSED else "failed",
                    "output": printable(check.output, multiline=True),
                    "visibility": visibility,
                }
                for check in result.checks
            ],
            # Gradescope keeps extra_data as it is; the grader's own facts go there.
            "extra_data": self.extra_data(result),
        }
        return json.dumps(document, indent=2) + "\n"

    @staticmethod
    def extra_data(result: SubmissionResult) -> dict:
        data: dict = {"reused": bool(result.reused_from), "leaked_credentials": result.leaked_credentials}
        if result.reused_from:
            data["reused_from"] = result.reused_from
        origin = result.provenance
        if origin is not None:
            data["repository"] = printable(origin.repository)
            data["graded_commit"] = origin.graded.sha if origin.graded else None
            data["graded_commit_date"] = origin.graded.date if origin.graded else None
            data["deadline"] = origin.deadline or None
            data["collected_at"] = origin.collected_at or None
            data["days_late"] = origin.days_late
            data["late"] = [{"sha": c.sha, "date": c.date, "subject": printable(c.subject)} for c in origin.late]
        return data

    def write(self, folder: Path, result: SubmissionResult, visibility: str = "visible") -> Path:
        path = folder / self.filename
        write_atomically(path, self.render(result, visibility))
        return path


class GradesCsv:
    """One row per submission: its score, one column per check, seconds."""

    filename = "grades.csv"

    def render(self, results: list[SubmissionResult], check_ids: list[str]) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        repositories = from_repositories(results)
        extra = CSV_REPOSITORY if repositories else ()
        writer.writerow([printable(cell) for cell in (*CSV_FIXED, *check_ids, CSV_SECONDS, *extra)])
        for result in results:
            scores = [format_points(result.check(i).score) if result.check(i) else "" for i in check_ids]
            writer.writerow(
                [printable(result.name), format_points(result.score), format_points(result.max_score), *scores, round(result.seconds)]
                + (repository_cells(result) if repositories else [])
            )
        return buffer.getvalue()

    def merge(self, paths: list[Path]) -> str:
        header: list[str] | None = None
        rows: dict[str, list[str]] = {}
        for path in paths:
            try:
                this_header, these_rows = self._read(path)
            except (csv.Error, UnicodeDecodeError) as error:
                raise ValueError(f"{path}: not a grades.csv of `grade` ({error})") from None
            if this_header is None:
                continue
            if header is not None and this_header != header:
                raise ValueError(f"{path}: its columns differ from the other shards'; grade every shard with the same rubric")
            header = this_header
            rows.update((row[0], row) for row in these_rows)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header or list(CSV_FIXED))
        writer.writerows(rows[name] for name in sorted(rows))
        return buffer.getvalue()

    @staticmethod
    def _read(path: Path) -> tuple[list[str] | None, list[list[str]]]:
        # Shards written by an older grader may hold raw control characters.
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            rows = [[printable(cell) for cell in row] for row in reader if row]
        return (None if header is None else [printable(cell) for cell in header]), rows


class JUnitXml:
    """One test suite per submission, one test case per check: CI shows every lost point."""

    filename = "junit.xml"

    def render(self, results: list[SubmissionResult]) -> str:
        root = ET.Element("testsuites", name="dcgan-grade")
        for result in results:
            root.append(self.suite(result))
        return self.serialise(root)

    def suite(self, result: SubmissionResult) -> ET.Element:
        failures = sum(1 for c in result.checks if c.outcome not in (PASSED, ERROR))
        errors = sum(1 for c in result.checks if c.outcome == ERROR)
        name = printable(result.name)
        suite = ET.Element(
            "testsuite",
            name=name,
            tests=str(len(result.checks)),
            failures=str(failures),
            errors=str(errors),
            time=f"{result.seconds:.1f}",
        )
        for check in result.checks:
            case = ET.SubElement(suite, "testcase", classname=name, name=printable(check.name))
            message = f"{format_points(check.score)}/{format_points(check.max_score)} points"
            output = printable(check.output, multiline=True)
            if check.outcome == ERROR:
                ET.SubElement(case, "error", message=message).text = output
            elif check.outcome != PASSED:
                ET.SubElement(case, "failure", message=message).text = output
            else:
                ET.SubElement(case, "system-out").text = output
        if result.crash:
            ET.SubElement(suite, "system-err").text = printable(f"grading failed: {result.crash}", multiline=True)
        return suite

    def merge(self, paths: list[Path]) -> str:
        root = ET.Element("testsuites", name="dcgan-grade")
        suites: dict[str, ET.Element] = {}
        for path in paths:
            try:
                root_of_shard = ET.parse(path).getroot()
            except ET.ParseError as error:
                raise ValueError(f"{path}: not a junit.xml of `grade` ({error})") from None
            for suite in root_of_shard.iter("testsuite"):
                suites[suite.get("name", "")] = suite
        for name in sorted(suites):
            root.append(suites[name])
        return self.serialise(root)

    @staticmethod
    def serialise(root: ET.Element) -> str:
        ET.indent(root)
        return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


class ClassTable:
    """The table printed when grading ends."""

    def render(self, results: list[SubmissionResult], check_ids: list[str]) -> str:
        repositories = from_repositories(results)
        rows = [["submission", *check_ids, "score", "seconds", *(["commit", "late", "leaked_credentials"] if repositories else [])]]
        for result in results:
            cells = [format_points(result.check(i).score) if result.check(i) else "-" for i in check_ids]
            row = [printable(result.name), *cells, f"{format_points(result.score)}/{format_points(result.max_score)}", f"{result.seconds:.0f}"]
            if repositories:
                origin = result.provenance
                graded = origin.graded.sha[:12] if origin and origin.graded else "-"
                row += [graded, str(len(origin.late)) if origin else "-", str(result.leaked_credentials)]
            rows.append(row)
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


# The files of a class in --out, beside the submissions' folders, and the
# partial files they are written through: no submission's folder may take
# one of their names, on a case-insensitive file system either.
CLASS_FILES = (GradesCsv.filename, JUnitXml.filename, "index.html", "similarity.csv")
RESERVED_NAMES = frozenset(name.casefold() for file in CLASS_FILES for name in (file, file + PARTIAL_SUFFIX))
