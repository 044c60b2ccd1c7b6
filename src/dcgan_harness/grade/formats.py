"""The formats graders use, each a small class over the one result model:
Gradescope's results.json per submission, grades.csv and junit.xml per
class, and the table printed at the end. `merge` joins the CSV and JUnit
files of shards graded on several machines."""

from __future__ import annotations

import csv
import io
import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

from .results import ERROR, PASSED, SubmissionResult, format_points

CSV_FIXED = ("submission", "score", "max_score")
CSV_SECONDS = "seconds"


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


class GradescopeJson:
    """results.json as Gradescope's autograder reads it."""

    filename = "results.json"

    def render(self, result: SubmissionResult, visibility: str = "visible") -> str:
        document = {
            "score": result.score,
            "execution_time": round(result.seconds),
            "output": "\n".join(result.summary_lines),
            "visibility": visibility,
            "tests": [
                {
                    "name": check.name,
                    "score": check.score,
                    "max_score": check.max_score,
                    "status": "passed" if check.outcome == PASSED else "failed",
                    "output": check.output,
                    "visibility": visibility,
                }
                for check in result.checks
            ],
        }
        return json.dumps(document, indent=2) + "\n"

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
        writer.writerow([*CSV_FIXED, *check_ids, CSV_SECONDS])
        for result in results:
            scores = [format_points(result.check(i).score) if result.check(i) else "" for i in check_ids]
            writer.writerow(
                [result.name, format_points(result.score), format_points(result.max_score), *scores, round(result.seconds)]
            )
        return buffer.getvalue()

    def merge(self, paths: list[Path]) -> str:
        header: list[str] | None = None
        rows: dict[str, list[str]] = {}
        for path in paths:
            with open(path, newline="", encoding="utf-8") as handle:
                reader = csv.reader(handle)
                this_header = next(reader, None)
                if this_header is None:
                    continue
                if header is not None and this_header != header:
                    raise ValueError(f"{path}: its columns differ from the other shards'; grade every shard with the same rubric")
                header = this_header
                for row in reader:
                    if row:
                        rows[row[0]] = row
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header or list(CSV_FIXED))
        writer.writerows(rows[name] for name in sorted(rows))
        return buffer.getvalue()


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
        suite = ET.Element(
            "testsuite",
            name=result.name,
            tests=str(len(result.checks)),
            failures=str(failures),
            errors=str(errors),
            time=f"{result.seconds:.1f}",
        )
        for check in result.checks:
            case = ET.SubElement(suite, "testcase", classname=result.name, name=check.name)
            message = f"{format_points(check.score)}/{format_points(check.max_score)} points"
            if check.outcome == ERROR:
                ET.SubElement(case, "error", message=message).text = check.output
            elif check.outcome != PASSED:
                ET.SubElement(case, "failure", message=message).text = check.output
            else:
                ET.SubElement(case, "system-out").text = check.output
        if result.crash:
            ET.SubElement(suite, "system-err").text = f"grading failed: {result.crash}"
        return suite

    def merge(self, paths: list[Path]) -> str:
        root = ET.Element("testsuites", name="dcgan-grade")
        suites: dict[str, ET.Element] = {}
        for path in paths:
            for suite in ET.parse(path).getroot().iter("testsuite"):
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
        rows = [["submission", *check_ids, "score", "seconds"]]
        for result in results:
            cells = [format_points(result.check(i).score) if result.check(i) else "-" for i in check_ids]
            rows.append([result.name, *cells, f"{format_points(result.score)}/{format_points(result.max_score)}", f"{result.seconds:.0f}"])
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)
