"""Submissions the way the course collects them, from real git repositories
made here: which commit is graded, which are late, what is read of a
repository, collecting at the deadline, the submission rules (other files,
credentials anywhere in the history). No VM, no network but a host name
that does not resolve."""

from __future__ import annotations

import json
import subprocess

import pytest
from gitclass import (
    ACCESS_KEY,
    DEADLINE,
    PLAYBOOK_LATE,
    PLAYBOOK_V1,
    PLAYBOOK_V2,
    SECRET,
    UNRESOLVABLE,
    assert_secret_nowhere,
    commit,
    fake_earlier_grading,
    files_under,
    git,
    make_class,
)

from dcgan_harness.grade import collect, command, courserules, leaks, reuse
from dcgan_harness.grade import git as gitrun
from dcgan_harness.grade.formats import printable
from dcgan_harness.grade.repos import (
    GRADE_LATEST,
    ON_TIME,
    RepoOptions,
    find_submissions,
    load_template,
    parse_deadline,
    read_roster,
)
from dcgan_harness.grade.rubric import load_rubric
from dcgan_harness.grade.submission import Submission, SubmissionError
from dcgan_harness.localrun import OFFLINE_APP, default_mnist_dir


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    return make_class(tmp_path_factory.mktemp("course"))


ROSTER = object()  # the class's own roster


def grade_roster(course, tmp_path, policy=ON_TIME, window=None, template=True, roster=ROSTER, arguments=()):
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    loaded = load_template(str(course.template), work) if template else None
    options = RepoOptions(work, parse_deadline(DEADLINE), policy, window, loaded)
    found = find_submissions(list(arguments), course.roster if roster is ROSTER else roster, options)
    return {submission.name: submission for submission in found}


# --- Which commit ------------------------------------------------------------------------


def test_each_repository_is_graded_at_its_last_commit_dated_before_the_deadline(course, tmp_path):
    found = grade_roster(course, tmp_path)
    assert sorted(found) == ["ana", "bruno", "carla", "dani"]
    assert found["ana"].origin.graded.sha == course.commits["ana:v2"]
    assert found["ana"].playbook == PLAYBOOK_V2.encode()
    assert found["bruno"].origin.graded.sha == course.commits["bruno:v1"]
    assert found["carla"].origin.graded.sha == course.commits["carla:v1"]


def test_later_commits_are_listed_as_late_with_sha_date_and_subject(course, tmp_path):
    ana = grade_roster(course, tmp_path)["ana"]
    [late] = ana.origin.late
    assert (late.sha, late.date, late.subject) == (course.commits["ana:late"], "2021-05-25T10:00:00-03:00", "Build the image, after the deadline")
    assert ana.origin.days_late == 0  # on time: the graded commit is before the deadline
    assert grade_roster(course, tmp_path)["bruno"].origin.late == ()
    assert any("set by the student's machine" in note for note in ana.origin.notes)
    assert any("collected" in note for note in ana.origin.notes)


def test_grade_latest_grades_the_latest_commit_and_counts_started_days(course, tmp_path):
    ana = grade_roster(course, tmp_path, policy=GRADE_LATEST, window=5)["ana"]
    assert ana.origin.graded.sha == course.commits["ana:late"] and ana.playbook == PLAYBOOK_LATE.encode()
    assert ana.origin.days_late == 1  # 20 h after the deadline is one started day


def test_grade_latest_does_not_grade_past_the_late_window(tmp_path):
    course = make_class(tmp_path / "course")
    commit(course.repos["ana"], "Much later", "2021-06-10T10:00:00-03:00", {"configure.yaml": "- hosts: cloud\n"})
    ana = grade_roster(course, tmp_path, policy=GRADE_LATEST, window=5)["ana"]
    assert ana.origin.graded.sha == course.commits["ana:late"]  # the latest within 5 days
    assert len(ana.origin.late) == 2 and any("not graded" in note for note in ana.origin.notes)


def test_a_roster_commit_pins_the_graded_commit(course, tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_text(f"student,repo,commit\nana,{course.url('ana')},{course.commits['ana:v1'][:10]}\nbruno,{course.url('bruno')},\n")
    found = grade_roster(course, tmp_path, roster=roster)
    assert found["ana"].origin.graded.sha == course.commits["ana:v1"] and found["ana"].playbook == PLAYBOOK_V1.encode()
    assert found["bruno"].origin.graded.sha == course.commits["bruno:v1"]


def test_a_roster_commit_that_is_not_there_is_that_students_row(course, tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_text(f"student,repo,commit\nana,{course.url('ana')},deadbeef\n")
    ana = grade_roster(course, tmp_path, roster=roster)["ana"]
    assert ana.playbook is None and "no commit deadbeef" in ana.problem


def test_a_repository_that_cannot_be_cloned_is_one_row_with_the_reason(course, tmp_path):
    dani = grade_roster(course, tmp_path)["dani"]
    assert dani.playbook is None and dani.source == UNRESOLVABLE
    assert "cannot read the repository" in dani.problem and "nonexistent.invalid" in dani.problem
    checks = {check.id: check for check in courserules.submission_checks(load_rubric(), dani)}
    assert "could not be read" in checks["credentials"].output


def test_only_the_graded_commits_configure_yaml_is_read(tmp_path):
    course = make_class(tmp_path / "course")
    ana = course.repos["ana"]
    (ana / "configure.yaml").write_text("# uncommitted, never graded\n")
    (ana / "ansible.cfg").write_text("[defaults]\nlookup_plugins = ./evil\n")
    # A local clone handed to the grader carries its own config and hooks: none may run.
    marker = tmp_path / "marker"
    git(ana, "config", "core.fsmonitor", f"touch {marker}; false")
    hook = ana / ".git" / "hooks" / "post-checkout"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    found = grade_roster(course, tmp_path, roster=None, arguments=[str(ana)], template=False)
    assert found["ana"].playbook == PLAYBOOK_V2.encode()
    assert not marker.exists()
    assert not any(path.name in ("configure.yaml", "ansible.cfg") for path in files_under(tmp_path / "work"))


def test_a_symlinked_configure_yaml_is_not_followed(tmp_path):
    course = make_class(tmp_path / "course")
    ana = course.repos["ana"]
    (ana / "configure.yaml").unlink()
    (ana / "configure.yaml").symlink_to("/etc/passwd")
    git(ana, "add", "-A")
    git(ana, "commit", "-q", "-m", "link", date="2021-05-24T13:50:00-03:00")
    found = grade_roster(course, tmp_path, template=False)
    assert found["ana"].playbook is None and "symbolic link" in found["ana"].problem


# --- Bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, message",
    [
        ("name,url\nana,x\n", "first line must be the header"),
        ("student,repo\nana,\n", ":2: write a student's name and repository"),
        ("student,repo\n", "lists no student"),
    ],
)
def test_a_bad_roster_is_a_one_line_error_naming_the_line(tmp_path, text, message):
    roster = tmp_path / "roster.csv"
    roster.write_text(text)
    with pytest.raises(SubmissionError, match=message) as caught:
        read_roster(roster)
    assert "\n" not in str(caught.value) and str(roster) in str(caught.value)


@pytest.mark.parametrize("text", ["2021-05-24 13:59", "tomorrow", "2021-05-24T13:59:00"])
def test_a_deadline_without_an_offset_is_refused(text):
    with pytest.raises(SubmissionError, match="--deadline .* offset"):
        parse_deadline(text)


def test_an_unsupported_url_is_a_row_not_a_clone(course, tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_text(f"student,repo\neve,ext::sh -c touch% {tmp_path}/pwned\nfred,ftp://example.com/x.git\n")
    found = grade_roster(course, tmp_path, roster=roster)
    assert "only https://" in found["fred"].problem and found["eve"].playbook is None
    assert not (tmp_path / "pwned").exists()


# --- The submission rules ------------------------------------------------------------------


def test_files_other_than_configure_yaml_are_listed_against_the_template(course, tmp_path):
    found = grade_roster(course, tmp_path)
    assert found["carla"].origin.changed_files == ("added: notes.txt",)
    assert found["ana"].origin.changed_files == ()
    files = {c.id: c for c in courserules.submission_checks(load_rubric(), found["carla"])}["files"]
    assert files.outcome == "failed" and files.score == 0 == files.max_score and "added: notes.txt" in files.output
    without = grade_roster(course, tmp_path, template=False)["carla"]
    assert without.origin.changed_files is None


def test_credentials_committed_and_deleted_are_found_across_the_history_and_masked(course, tmp_path):
    bruno = grade_roster(course, tmp_path)["bruno"]
    leaked = bruno.origin.leaks
    assert len(leaked) == 3
    assert all(course.commits["bruno:vars"][:12] in line and "vars.sh" in line and "not in the graded commit, but still in the history" in line for line in leaked)
    assert any(f"{ACCESS_KEY[:4]}****" in line for line in leaked) and any(f"{SECRET[:4]}****" in line for line in leaked)
    assert_secret_nowhere(tmp_path, *leaked, bruno.problem, *bruno.origin.notes)
    check = {c.id: c for c in courserules.submission_checks(load_rubric(), bruno)}["credentials"]
    assert check.outcome == "failed" and "security" in check.output and "deactivate the key" in check.output
    assert grade_roster(course, tmp_path)["ana"].origin.leaks == ()


def test_credentials_on_another_branch_and_in_a_pem_file_count_too(tmp_path):
    course = make_class(tmp_path / "course")
    ana = course.repos["ana"]
    git(ana, "checkout", "-q", "-b", "experiment")
    commit(ana, "try", "2021-05-22T10:00:00-03:00", {".aws/credentials": "[default]\n", "keys/key.pem": "-----BEGIN RSA PRIVATE KEY-----\n"})
    git(ana, "checkout", "-q", "main")
    commit(ana, "hard-coded", "2021-05-24T13:40:00-03:00", {"configure.yaml": f"- hosts: cloud\n  environment: {{AWS_ACCESS_KEY_ID: {ACCESS_KEY}}}\n"})
    found = grade_roster(course, tmp_path, template=False)["ana"]
    assert any(".aws/credentials" in line for line in found.origin.leaks)
    assert any("keys/key.pem" in line and "private key" in line for line in found.origin.leaks)
    assert any("configure.yaml:2" in line and "still in the graded commit" in line for line in found.origin.leaks)


def test_a_key_in_the_graded_playbook_is_masked_in_the_copy_beside_the_results(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/dcgan-test-docker.sock")  # no VM may start
    course = make_class(tmp_path / "course")
    commit(course.repos["carla"], "hard-coded", "2021-05-24T13:40:00-03:00",
           {"configure.yaml": f"- hosts: cloud\n  environment: {{AWS_ACCESS_KEY_ID: {ACCESS_KEY}}}\n"})  # fmt: skip
    work = tmp_path / "work"
    work.mkdir()
    submissions = find_submissions([], course.roster, RepoOptions(work, parse_deadline(DEADLINE), ON_TIME))
    out = tmp_path / "grades"
    context = reuse.Context(load_rubric(), "fast", 900.0, reuse.offline_app_commit(OFFLINE_APP, default_mnist_dir(), "fast"))
    fake_earlier_grading(out, submissions, context)
    (out / "carla" / "log.txt").write_text(f"TASK [env] ok: {ACCESS_KEY}\n")
    assert ACCESS_KEY in (out / "carla" / "configure.yaml").read_text()  # as the stages leave it
    assert command.main(["--out", str(out), "--deadline", DEADLINE, "--roster", str(course.roster)]) == 0
    captured = capsys.readouterr()
    assert f"{ACCESS_KEY[:4]}****" in (out / "carla" / "configure.yaml").read_text()
    assert_secret_nowhere(out, captured.out, captured.err)


def test_mask_keeps_four_characters_and_every_format_masks():
    text = f"export AWS_SECRET_ACCESS_KEY={SECRET} and {ACCESS_KEY}"
    assert leaks.mask_secrets(text) == f"export AWS_SECRET_ACCESS_KEY={SECRET[:4]}**** and {ACCESS_KEY[:4]}****"
    assert SECRET not in printable(text) and ACCESS_KEY not in printable(text)
    # A git hash is 40 characters too, but not a secret.
    sha = "a" * 20 + "0123456789abcdef0123"
    assert leaks.mask_secrets(f"secret commit {sha}") == f"secret commit {sha}"


def test_a_playbook_handed_in_as_a_file_is_searched_for_keys(tmp_path):
    playbook = f"- hosts: cloud\n  environment:\n    AWS_ACCESS_KEY_ID: {ACCESS_KEY}\n".encode()
    submission = Submission("eve", tmp_path / "eve.yaml", playbook)
    check = {c.id: c for c in courserules.submission_checks(load_rubric(), submission)}["credentials"]
    assert check.outcome == "failed" and "configure.yaml:3" in check.output and ACCESS_KEY not in check.output


# --- Collecting at the deadline ------------------------------------------------------------


def test_collect_keeps_what_each_repository_held_and_when(tmp_path):
    course = make_class(tmp_path / "course")
    folder = tmp_path / "collected"
    records = collect.collect(read_roster(course.roster), folder, jobs=2)
    by_student = {record["student"]: record for record in records}
    assert by_student["ana"]["head"] == course.commits["ana:late"] and by_student["ana"]["collected_at"]
    assert "cannot clone" in by_student["dani"]["error"] and not by_student["dani"]["dir"]
    manifest = json.loads((folder / "collection.json").read_text())
    assert [r["student"] for r in manifest["repositories"]] == ["ana", "bruno", "carla", "dani"]
    assert (folder / "collection.csv").read_text().startswith("student,repo,dir,commit,collected_at,head,error\n")
    # Bare copies: no student file is ever checked out.
    assert not any(path.name in ("configure.yaml", "vars.sh", "notes.txt") for path in files_under(folder))

    # A commit pushed after the collection, dated before the deadline, is not in what was collected.
    backdated = commit(course.repos["ana"], "Backdated", "2021-05-24T13:58:00-03:00", {"configure.yaml": "- hosts: cloud\n  tasks: []\n"})
    work = tmp_path / "work"
    work.mkdir()
    options = RepoOptions(work, parse_deadline(DEADLINE), ON_TIME)
    found = {s.name: s for s in find_submissions([str(folder)], None, options)}
    assert found["ana"].origin.graded.sha == course.commits["ana:v2"]
    assert found["ana"].origin.collected_at == by_student["ana"]["collected_at"]
    assert found["ana"].source == course.url("ana")
    assert any(note.startswith("collected at ") for note in found["ana"].origin.notes)
    assert found["dani"].playbook is None and "not collected" in found["dani"].problem

    # Collecting again fetches it, and moves the time.
    again = {r["student"]: r for r in collect.collect(read_roster(course.roster), folder)}
    assert again["ana"]["head"] == backdated and again["ana"]["collected_at"] >= by_student["ana"]["collected_at"]
    regraded = {s.name: s for s in find_submissions([str(folder)], None, options)}
    assert regraded["ana"].origin.graded.sha == backdated


def test_the_collect_command_prints_one_line_per_repository(tmp_path, capsys):
    course = make_class(tmp_path / "course")
    assert command.main(["collect", "--roster", str(course.roster), "--out", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "collected 3 of 4 repositories" in out and "dani: not collected" in out
    assert command.main(["collect", "--roster", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "c")]) == 2
    assert "cannot read it" in capsys.readouterr().err


def test_a_repository_named_on_the_command_line_by_url(course, tmp_path):
    found = grade_roster(course, tmp_path, roster=None, arguments=[course.url("carla")])
    assert list(found) == ["carla"] and found["carla"].playbook == PLAYBOOK_V2.encode()


def test_git_never_prompts_for_a_password(tmp_path):
    # GIT_TERMINAL_PROMPT=0: a URL that asks for credentials fails at once instead of waiting on stdin.
    env = gitrun.environment()
    assert env["GIT_TERMINAL_PROMPT"] == "0" and "BatchMode=yes" in env["GIT_SSH_COMMAND"]
    with pytest.raises(gitrun.GitError):
        gitrun.clone_bare("https://user@nonexistent.invalid/x.git", tmp_path / "x.git", timeout=30)
    assert gitrun.without_credentials("https://user:token@github.com/a/b.git") == "https://github.com/a/b.git"
    assert subprocess.run(["git", "--version"], capture_output=True).returncode == 0


# --- Through the command -------------------------------------------------------------------


def test_grading_a_collected_class_flags_the_leak_and_writes_the_secret_nowhere(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/dcgan-test-docker.sock")  # no VM may start
    course = make_class(tmp_path / "course")
    folder = tmp_path / "collected"
    collect.collect(read_roster(course.roster), folder)
    work = tmp_path / "work"
    work.mkdir()
    submissions = find_submissions([str(folder)], None, RepoOptions(work, parse_deadline(DEADLINE), ON_TIME))
    out = tmp_path / "grades"
    context = reuse.Context(load_rubric(), "fast", 900.0, reuse.offline_app_commit(OFFLINE_APP, default_mnist_dir(), "fast"))
    fake_earlier_grading(out, submissions, context)
    capsys.readouterr()
    assert command.main(["--out", str(out), "--deadline", DEADLINE, str(folder)]) == 0
    captured = capsys.readouterr()
    bruno = json.loads((out / "bruno" / "results.json").read_text())
    credentials = next(test for test in bruno["tests"] if test["name"] == "No credentials in the repository's history")
    assert credentials["status"] == "failed" and course.commits["bruno:vars"][:12] in credentials["output"]
    assert "vars.sh:2" in credentials["output"] and f"{SECRET[:4]}****" in credentials["output"]
    assert bruno["extra_data"]["leaked_credentials"] == 3 and bruno["extra_data"]["collected_at"]
    assert captured.out.splitlines()[0].split()[-3:] == ["commit", "late", "leaked_credentials"]
    assert_secret_nowhere(out, captured.out, captured.err)
    assert_secret_nowhere(tmp_path / "work")
    for manifest in ("collection.json", "collection.csv"):
        assert ACCESS_KEY not in (folder / manifest).read_text() and SECRET not in (folder / manifest).read_text()
