"""Grading always finishes: what a hostile submission can do to the grader's
names, outputs, logs, copies and checks, without a VM or Docker."""

from __future__ import annotations

import csv
import io
import json
import tarfile
import os
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest

from dcgan_harness.grade import command, pipeline, verify
from dcgan_harness.grade.outside import SafeTree
from dcgan_harness.grade.formats import (
    CLASS_FILES,
    RESERVED_NAMES,
    ClassTable,
    GradescopeJson,
    GradesCsv,
    JUnitXml,
    printable,
    write_atomically,
)
from dcgan_harness.grade.results import ERROR, FAILED, PASSED, CheckResult, SubmissionResult
from dcgan_harness.grade.rubric import load_rubric
from dcgan_harness.grade.run import first_failure
from dcgan_harness.grade.submission import MAX_NAME_CHARS, Submission, discover, unique_names
from dcgan_harness.grade.work import SubmissionWork
from dcgan_harness.localcloud import controller
from dcgan_harness.localcloud.logcap import MAX_LINE_BYTES, MAX_LOG_BYTES, MEMORY_HEAD_BYTES, TAIL_BYTES, CappedLog

PLAYBOOK = b"- hosts: cloud\n  tasks: []\n"
CHECK_IDS = ["install", "run"]
# What a task name or a command's output can hold: ESC, NUL, BEL, NEL, a lone surrogate.
HOSTILE_TEXT = "red \x1b[31mtext\x1b[0m, nul \x00, bell \x07, nel \x85, surrogate \ud800, end"
# Characters no output may hold raw once rendered.
RAW = ("\x1b", "\x00", "\x07", "\x85", "\ud800")


# --- Names ------------------------------------------------------------------------------


def test_a_folder_and_files_that_derive_the_same_names_get_three_distinct_ones(tmp_path):
    (tmp_path / "ana").mkdir()
    (tmp_path / "ana" / "configure.yaml").write_bytes(b"# folder\n" + PLAYBOOK)
    (tmp_path / "ana-2.yaml").write_bytes(b"# ana-2\n" + PLAYBOOK)
    (tmp_path / "ana.yaml").write_bytes(b"# file\n" + PLAYBOOK)
    found = discover([tmp_path])
    assert [(s.name, s.source.name) for s in found] == [("ana", "ana"), ("ana-2", "ana-2.yaml"), ("ana-3", "ana.yaml")]
    assert [s.name for s in discover([tmp_path])] == ["ana", "ana-2", "ana-3"]  # the same on every run


@pytest.mark.parametrize("file_name", ["grades.csv.yaml", "JUNIT.XML.yaml", "junit.xml.partial.yaml", "Grades.CSV.yml"])
def test_no_submission_takes_the_name_of_a_class_file(tmp_path, file_name):
    (tmp_path / file_name).write_bytes(PLAYBOOK)
    (tmp_path / "bob.yaml").write_bytes(PLAYBOOK)
    names = [s.name for s in discover([tmp_path])]
    assert len(names) == 2 and "bob" in names
    assert all(name.casefold() not in RESERVED_NAMES for name in names)
    assert {file.casefold() for file in CLASS_FILES} <= RESERVED_NAMES


def test_names_that_differ_only_in_case_get_distinct_folders():
    submissions = [Submission(name, Path(f"{name}.yaml"), PLAYBOOK) for name in ("Ana", "ana", "ANA-2")]
    assert [s.name for s in unique_names(submissions)] == ["Ana", "ana-3", "ANA-2"]


def test_dot_names_and_overlong_names_become_usable_folder_names(tmp_path):
    (tmp_path / ("x" * 200 + ".yaml")).write_bytes(PLAYBOOK)
    (tmp_path / "_.yaml").write_bytes(PLAYBOOK)
    names = [s.name for s in discover([tmp_path])]
    assert sorted(len(name) for name in names) == [len("submission"), MAX_NAME_CHARS]


def test_results_are_kept_by_submission_even_when_names_repeat(monkeypatch, tmp_path):
    def graded(run, submission, index, total):
        return SubmissionResult(submission.name, str(submission.source), seconds=index)

    monkeypatch.setattr(pipeline, "grade_submission", graded)
    twins = [Submission("ana", Path("a/configure.yaml"), PLAYBOOK), Submission("ana", Path("ana.yaml"), PLAYBOOK)]
    results = pipeline._grade_in_pool(SimpleNamespace(), twins, jobs=2)
    assert [(r.source, r.seconds) for r in results] == [("a/configure.yaml", 1), ("ana.yaml", 2)]


# --- Control characters in every format -----------------------------------------------------


def hostile_results() -> list[SubmissionResult]:
    first = SubmissionResult(f"evil{HOSTILE_TEXT}", "evil.yaml", seconds=12.0, crash=f"run: {HOSTILE_TEXT}")
    first.checks = [
        CheckResult("install", f"Install {HOSTILE_TEXT}", 0, 15, FAILED, [f"task '{HOSTILE_TEXT}' failed", "second line"]),
        CheckResult("run", "Run", 0, 25, ERROR, [HOSTILE_TEXT]),
    ]
    second = SubmissionResult("plain", "plain.yaml", seconds=3.0)
    second.checks = [CheckResult("install", "Install", 15, 15, PASSED, ["ok"]), CheckResult("run", "Run", 25, 25, PASSED, [HOSTILE_TEXT])]
    return [first, second]


def test_printable_escapes_what_breaks_lines_terminals_and_xml_and_keeps_the_rest():
    assert printable("a\x1bb\x00c\x07d\x85e\ud800f\x7fg") == "a\\x1bb\\x00c\\x07d\\x85e\\ud800f\\x7fg"
    assert printable("one\ntwo\tthree\rfour") == "one\\ntwo\\tthree\\rfour"
    assert printable("one\ntwo\tthree\r", multiline=True) == "one\ntwo\tthree\\r"
    assert printable("sep\u2028ara\ufffftor") == "sep\\u2028ara\\ufffftor"
    assert printable("café, 模型, 🙂") == "café, 模型, 🙂"


def test_junit_parses_whatever_the_results_hold():
    text = JUnitXml().render(hostile_results())
    root = ET.fromstring(text.encode("utf-8"))
    suites = list(root.iter("testsuite"))
    assert len(suites) == 2
    failure = suites[0].find("testcase/failure")
    assert "\\x1b[31m" in failure.text and "second line" in failure.text
    assert not any(raw in text for raw in RAW)


def test_the_csv_has_one_row_per_submission_with_every_column():
    text = GradesCsv().render(hostile_results(), CHECK_IDS)
    lines = text.splitlines()
    assert len(lines) == 3  # the header and one line per submission, as every reader splits them
    rows = list(csv.reader(io.StringIO(text)))
    assert [len(row) for row in rows] == [6, 6, 6]
    assert rows[1][0] == printable(hostile_results()[0].name)


def test_the_class_table_has_one_line_per_submission():
    table = ClassTable().render(hostile_results(), CHECK_IDS)
    assert len(table.splitlines()) == 3
    assert not any(raw in table for raw in RAW)
    table.encode("utf-8")  # printable to any terminal, no lone surrogate left


def test_results_json_holds_the_escaped_text_and_encodes():
    text = GradescopeJson().render(hostile_results()[0])
    document = json.loads(text)
    assert "\\x1b[31m" in document["tests"][0]["output"] and "\n" in document["tests"][0]["output"]
    assert "\\x1b[31m" in document["tests"][0]["name"]
    assert not any(raw in json.dumps(document, ensure_ascii=False) for raw in RAW)
    text.encode("utf-8")


def test_merge_of_shards_holding_such_results_works(tmp_path, capsys):
    for shard, results in (("one", hostile_results()[:1]), ("two", hostile_results()[1:])):
        write_atomically(tmp_path / shard / "grades.csv", GradesCsv().render(results, CHECK_IDS))
        write_atomically(tmp_path / shard / "junit.xml", JUnitXml().render(results))
    out = tmp_path / "merged"
    assert command.main(["merge", str(tmp_path / "one"), str(tmp_path / "two"), "--out", str(out)]) == 0
    rows = list(csv.reader(open(out / "grades.csv", newline="")))
    assert [len(row) for row in rows] == [6, 6, 6]
    assert len(list(ET.parse(out / "junit.xml").getroot().iter("testsuite"))) == 2


def test_merge_escapes_an_older_shards_raw_characters_and_refuses_broken_xml_in_one_line(tmp_path, capsys):
    for shard in ("one", "two"):
        (tmp_path / shard).mkdir()
        (tmp_path / shard / "junit.xml").write_text(JUnitXml().render(hostile_results()[1:]))
    (tmp_path / "one" / "grades.csv").write_text("submission,score\n\"a\x1bb\",1\n")
    (tmp_path / "two" / "grades.csv").write_text("submission,score\nc,2\n")
    out = tmp_path / "merged"
    assert command.main(["merge", str(tmp_path / "one"), str(tmp_path / "two"), "--out", str(out)]) == 0
    assert (out / "grades.csv").read_text() == "submission,score\na\\x1bb,1\nc,2\n"
    (tmp_path / "two" / "junit.xml").write_text("<testsuites><testsuite name='\x1b'/></testsuites>")
    assert command.main(["merge", str(tmp_path / "one"), str(tmp_path / "two"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "not a junit.xml" in err and len(err.strip().splitlines()) == 1


def test_a_failed_task_named_with_line_breaking_characters_is_still_found():
    log = "TASK [Fail \x0c\x85 \x1b[31mred] ****\nfatal: [compute01]: FAILED! => {\"msg\": \"boom\"}\n"
    assert first_failure(log) == "task 'Fail \x0c\x85 \x1b[31mred': boom"


# --- Logs ------------------------------------------------------------------------------


def flood(log: CappedLog, lines: int, width: int = 100) -> None:
    for number in range(0, lines, 1000):
        log.feed(b"".join(b"line %08d %s\n" % (n, b"x" * width) for n in range(number, min(number + 1000, lines))))


def test_a_flood_keeps_the_logs_head_and_tail_and_says_what_it_dropped(tmp_path):
    path = tmp_path / "log.txt"
    log = CappedLog(path)
    flood(log, 200_000)  # about 23 MiB
    log.close()
    assert path.stat().st_size <= MAX_LOG_BYTES
    text = path.read_text()
    lines = text.splitlines()
    assert lines[0].startswith("line 00000000 ") and lines[-1].startswith("line 00199999 ")
    marks = [line for line in lines if line.startswith("[... ")]
    assert len(marks) == 1 and "line(s)" in marks[0] and "MiB, dropped here" in marks[0]
    dropped = int(marks[0].split()[1])
    assert len(lines) - 1 + dropped == 200_000
    kept = log.text()
    assert len(kept.encode()) <= MEMORY_HEAD_BYTES + TAIL_BYTES + 1024
    assert kept.startswith("line 00000000 ") and kept.rstrip().endswith("x" * 100)


def test_a_short_log_is_kept_whole_without_a_mark(tmp_path):
    path = tmp_path / "log.txt"
    log = CappedLog(path)
    log.feed(b"PLAY [cloud] ***\nTASK [a] ***\nok: [compute01]")
    log.close()
    assert path.read_text() == log.text() == "PLAY [cloud] ***\nTASK [a] ***\nok: [compute01]\n"


def test_an_endless_line_is_cut_as_it_comes(tmp_path):
    path = tmp_path / "log.txt"
    seen = []
    log = CappedLog(path, on_line=seen.append)
    log.feed(b"before\n")
    for _ in range(2000):  # 20 MB on one line, in pieces
        log.feed(b"y" * 10_000)
    log.feed(b"\nafter\n")
    log.close()
    lines = path.read_text().splitlines()
    assert lines[0] == "before" and lines[2] == "after"
    assert lines[1] == "y" * MAX_LINE_BYTES + f" [... {20_000_000 - MAX_LINE_BYTES} more bytes of this line dropped]"
    assert seen == lines


def test_the_failure_of_a_cut_result_still_names_its_message_and_exit_status():
    detail = json.dumps({"changed": True, "cmd": "docker build .", "msg": "non-zero return code", "rc": 1, "stdout": "z" * 200_000})
    log = f"TASK [Build the image] ****\nfatal: [compute01]: FAILED! => {detail[:MAX_LINE_BYTES]} [... 1 more bytes of this line dropped]\n"
    assert first_failure(log) == "task 'Build the image': non-zero return code (exit 1)"


# --- What is copied out of resultados/ -----------------------------------------------------


def archive_client(members: list[tuple[str, bytes]]):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    data = buffer.getvalue()
    chunks = [data[i : i + 8192] for i in range(0, len(data), 8192)]
    container = SimpleNamespace(get_archive=lambda path: ((chunk for chunk in chunks), {}))  # a generator, as docker-py's
    return SimpleNamespace(containers=SimpleNamespace(get=lambda name: container))


def test_resultados_is_copied_within_a_file_count_and_a_depth(tmp_path, monkeypatch):
    monkeypatch.setattr(controller, "MAX_RESULTS_FILES", 20)
    deep = "resultados/" + "/".join(["d"] * controller.MAX_RESULTS_DEPTH) + "/output.txt"
    members = [("resultados/compute01/home/ubuntu/output.txt", b"ok"), (deep, b"too deep")]
    members += [(f"resultados/many/{n}.txt", b"x") for n in range(30)]
    collected = controller.collect_results("c", archive_client(members), tmp_path)
    assert len(collected.files) == 20 and (tmp_path / "compute01/home/ubuntu/output.txt").read_bytes() == b"ok"
    assert collected.dropped == (
        "resultados/ was not copied whole: left out everything after its first 20 files; "
        f"1 file(s) more than {controller.MAX_RESULTS_DEPTH} levels down"
    )
    assert "\n" not in collected.dropped


def test_resultados_is_copied_within_a_size(tmp_path, monkeypatch):
    monkeypatch.setattr(controller, "MAX_RESULTS_BYTES", 1024 * 1024)
    members = [(f"resultados/{n}.bin", b"b" * 300_000) for n in range(5)]
    collected = controller.collect_results("c", archive_client(members), tmp_path)
    assert len(collected.files) == 3 and "beyond its first 1 MiB" in collected.dropped


def test_a_small_resultados_is_copied_whole_without_a_note(tmp_path):
    collected = controller.collect_results("c", archive_client([("resultados/h/output.txt", b"ok")]), tmp_path)
    assert collected.files == [tmp_path / "h" / "output.txt"] and collected.dropped == ""


# --- Verify on a VM that holds what blocks a reader ------------------------------------


def test_a_fifo_as_head_fails_the_clone_check_at_once_and_the_others_still_run(monkeypatch, tmp_path):
    root = tmp_path / "vm"
    (root / "home/ubuntu/Distributed-DCGAN/.git").mkdir(parents=True)
    os.mkfifo(root / "home/ubuntu/Distributed-DCGAN/.git/HEAD")
    monkeypatch.setattr(verify.VmFromOutside, "of", classmethod(lambda cls, machine: cls(SafeTree(root), None, [])))
    rubric = load_rubric()
    run = SimpleNamespace(rubric=rubric, served=SimpleNamespace(commit="c0ffee" * 6), staged_images=256, client=None)
    result = SubmissionResult("fifo", "fifo.yaml")
    work = SubmissionWork(Submission("fifo", Path("fifo.yaml"), PLAYBOOK), 1, 1, tmp_path, result)
    work.target = SimpleNamespace(machines=[SimpleNamespace(name="vm", freeze=lambda: True)])
    started = time.monotonic()
    verify.VerifyStage().run(run, work)
    assert time.monotonic() - started < 5
    clone = result.check("clone")
    assert clone.outcome == FAILED and "/home/ubuntu/Distributed-DCGAN (no commit)" in clone.output
    assert [c.id for c in result.checks] == ["install", "clone", "build", "run", "fetch"]
    assert result.check("fetch").outcome == FAILED
