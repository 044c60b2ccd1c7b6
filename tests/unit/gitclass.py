"""A class the way the course collects it, made of real git repositories: the
course's template, students' clones with commits dated around the deadline,
one with vars.sh committed and deleted, one with an extra file, and a
repository URL that does not resolve."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

DEADLINE = "2021-05-24T13:59:00-03:00"
# Fake credentials, built here so that no scanner takes this file for a leak.
ACCESS_KEY = "AKIA" + "TESTONLY" + "7Q2X4M9P"
SECRET = "Fake" + "0nly" + "Secret/" + "x9" * 12 + "Q"
UNRESOLVABLE = "https://nonexistent.invalid/dani/configure.git"

TEMPLATE_FILES = {
    "README.md": "# Cloud computing: deploy the DCGAN with Ansible\n",
    "inventory.yaml": "cloud:\n  hosts:\n    compute01:\n",
    "vars.sh.example": 'export AWS_ACCESS_KEY_ID="REPLACE_ME"\nexport AWS_SECRET_ACCESS_KEY="REPLACE_ME"\n',
}
PLAYBOOK_V1 = "- hosts: cloud\n  tasks:\n    - name: Install Docker\n      ansible.builtin.apt: {name: docker.io}\n"
PLAYBOOK_V2 = PLAYBOOK_V1 + "    - name: Clone\n      ansible.builtin.git: {repo: 'https://github.com/otavioon/Distributed-DCGAN.git', dest: /home/ubuntu/dcgan}\n"
PLAYBOOK_LATE = PLAYBOOK_V2 + "    - name: Build\n      community.docker.docker_image: {name: dist_dcgan, source: build, build: {path: /home/ubuntu/dcgan}}\n"
VARS_SH = f'export AWS_ACCESS_KEY_ID="{ACCESS_KEY}"\nexport AWS_SECRET_ACCESS_KEY="{SECRET}"\nexport AWS_REGION="us-east-1"\n'


def git_env(date: str | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    env.update(
        GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME="Student", GIT_AUTHOR_EMAIL="student@example.com",
        GIT_COMMITTER_NAME="Student", GIT_COMMITTER_EMAIL="student@example.com",
    )  # fmt: skip
    if date:
        env.update(GIT_AUTHOR_DATE=date, GIT_COMMITTER_DATE=date)
    return env


def git(repo: Path, *args: str, date: str | None = None) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], env=git_env(date), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def commit(repo: Path, message: str, date: str, files: dict[str, str] | None = None, remove: tuple[str, ...] = ()) -> str:
    for path, text in (files or {}).items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    for path in remove:
        git(repo, "rm", "-q", path)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message, date=date)
    return git(repo, "rev-parse", "HEAD")


@dataclass
class GitClass:
    root: Path
    template: Path
    repos: dict[str, Path]
    commits: dict[str, str]  # "<student>:<what>" -> sha
    roster: Path

    def url(self, student: str) -> str:
        return f"file://{self.repos[student]}"


def make_class(root: Path) -> GitClass:
    template = root / "course"
    template.mkdir(parents=True)
    git(template, "init", "-q", "-b", "main")
    commit(template, "The assignment", "2021-05-01T09:00:00-03:00", TEMPLATE_FILES)
    commits: dict[str, str] = {}
    repos: dict[str, Path] = {}

    def student(name: str) -> Path:
        repo = root / "students" / name
        subprocess.run(["git", "clone", "-q", str(template), str(repo)], env=git_env(), check=True, capture_output=True)
        repos[name] = repo
        return repo

    ana = student("ana")
    commits["ana:v1"] = commit(ana, "First playbook", "2021-05-20T10:00:00-03:00", {"configure.yaml": PLAYBOOK_V1})
    commits["ana:v2"] = commit(ana, "Clone the DCGAN", "2021-05-24T13:30:00-03:00", {"configure.yaml": PLAYBOOK_V2})
    commits["ana:late"] = commit(ana, "Build the image, after the deadline", "2021-05-25T10:00:00-03:00", {"configure.yaml": PLAYBOOK_LATE})

    bruno = student("bruno")
    commits["bruno:vars"] = commit(bruno, "My settings", "2021-05-20T09:00:00-03:00", {"vars.sh": VARS_SH})
    commits["bruno:rm"] = commit(bruno, "Remove vars.sh", "2021-05-21T09:00:00-03:00", remove=("vars.sh",))
    commits["bruno:v1"] = commit(bruno, "Playbook", "2021-05-22T09:00:00-03:00", {"configure.yaml": PLAYBOOK_V1})

    carla = student("carla")
    commits["carla:v1"] = commit(carla, "Playbook and notes", "2021-05-23T20:00:00-03:00",
                                 {"configure.yaml": PLAYBOOK_V2, "notes.txt": "what I tried\n"})  # fmt: skip

    roster = root / "roster.csv"
    lines = ["student,repo"] + [f"{name},file://{repo}" for name, repo in repos.items()] + [f"dani,{UNRESOLVABLE}"]
    roster.write_text("\n".join(lines) + "\n")
    return GitClass(root, template, repos, commits, roster)


def files_under(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


def assert_secret_nowhere(folder: Path, *texts: str) -> None:
    """Neither the access key id nor the secret appears in any file under folder, or in texts."""
    for path in files_under(folder):
        data = path.read_bytes()
        assert ACCESS_KEY.encode() not in data and SECRET.encode() not in data, f"a credential leaked into {path}"
    for text in texts:
        assert ACCESS_KEY not in text and SECRET not in text


# --- A grading that already happened ---------------------------------------------------


def fake_earlier_grading(out: Path, submissions, context, failing=("fetch",), findings: int = 0, feedback=None) -> None:
    """What a first `grade` of these submissions into out would have left, its VM stages decided as given."""
    from dcgan_harness.grade import reuse
    from dcgan_harness.grade.formats import GradescopeJson
    from dcgan_harness.grade.results import FAILED, PASSED, CheckResult, StageReport, SubmissionResult
    from dcgan_harness.grade.rubric import STAGE_CHECK_IDS

    for submission in submissions:
        result = SubmissionResult(submission.name, str(submission.source), seconds=42.0)
        folder = out / submission.name
        folder.mkdir(parents=True, exist_ok=True)
        if submission.playbook is None:
            result.stages.append(StageReport("static", submission.problem, 0.0))
        else:
            result.stages.append(StageReport("static", f"yamllint 0 error(s), syntax-check passed, {findings} rule finding(s), 0 advisory", 1.0))
            (folder / "configure.yaml").write_bytes(submission.playbook)
            (folder / "log.txt").write_text("PLAY [cloud]\nPLAY RECAP\n")
            (folder / "resultados" / "compute01").mkdir(parents=True, exist_ok=True)
            (folder / "resultados" / "compute01" / "output.txt").write_text("[0/1][0/2] Loss_D: 1.3 Loss_G: 0.7\n")
        for rule in context.rubric.checks:
            if rule.id not in STAGE_CHECK_IDS:
                continue
            ok = submission.playbook is not None and rule.id not in failing
            lines = (feedback or {}).get(rule.id, ["as expected" if ok else "not done"])
            result.checks.append(CheckResult(rule.id, rule.name, rule.points if ok else 0, rule.points, PASSED if ok else FAILED, list(lines)))
        GradescopeJson().write(folder, result)
        assert reuse.store(folder, submission, result, context)
