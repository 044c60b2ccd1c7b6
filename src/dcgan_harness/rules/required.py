"""The steps the course asks for, each judged by what its task does.

A step counts only when its task runs on a plain run of the playbook (not
switched off, not only in a ``rescue``, not a handler nobody notifies, not
after a task that certainly fails) and when its arguments do the step: the
packages installed as root, the course's repository cloned, the image built
from the clone, output.txt fetched. A value the file alone cannot settle is
said as advice, never taken as a pass.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator

from . import commands
from .base import Course, Rule
from .findings import Finding
from .model import Playbook, Task
from .privilege import becomes_root
from .templates import Unknown, to_bool
from .values import DONE, Verdict, known, per_item, render

DOCKER_IMAGE_MODULES = frozenset({"docker_image"})
PACKAGE_MODULES = frozenset({"apt", "package"})
INSTALLED_STATES = frozenset({"present", "latest", "fixed", "installed"})
PACKAGE_KEYS = ("name", "pkg", "package")
# Every URL GitHub answers for a repository: https/http/git/ssh, scp-like, www., .git, a trailing slash.
GIT_URL = re.compile(
    r"^(?:(?:https?|git|ssh|git\+ssh)://(?:[^@/]+@)?(?P<host>[^/:]+)(?::\d+)?/"
    r"|(?:[^@/]+@)?(?P<scp_host>[^/:]+):)"
    r"(?P<path>[^?#]+?)(?:\.git)?/*$",
    re.IGNORECASE,
)

def _running(playbook: Playbook, modules: frozenset[str] | set[str]) -> list[Task]:
    return [task for task in playbook.tasks if task.module in modules and playbook.runs(task)]


def _render(task: Task, value, playbook: Playbook, lenient: bool = False):
    return render(task, value, playbook, lenient)


def builds_from_source(task: Task, playbook: Playbook) -> bool:
    """A docker_image task with ``source: build``, the variable form included."""
    if task.module not in DOCKER_IMAGE_MODULES:
        return False
    try:
        return _render(task, task.args.get("source", ""), playbook) == "build"
    except Unknown:
        return False


def package_names(value) -> list[str]:
    """Package names without their version (docker.io=20.10*, git>=1:2)."""
    names = value if isinstance(value, list) else str(value).split(",")
    return [re.split(r"[=<>]", str(name).strip(), maxsplit=1)[0] for name in names if str(name).strip()]


def installs_docker(task: Task, playbook: Playbook, course: Course) -> Verdict:
    try:
        states = {str(state) for state in per_item(task, task.args.get("state", "present"), playbook)}
        key = next((key for key in PACKAGE_KEYS if key in task.args), "name")
        names = [name for value in per_item(task, task.args.get(key, []), playbook) for name in package_names(value)]
    except Unknown as error:
        return Verdict(None, f"installs the Docker engine ({error})")
    if not states <= INSTALLED_STATES:
        return Verdict(False, f"has state {', '.join(sorted(states - INSTALLED_STATES))}, which installs nothing")
    if not set(names) & set(course.docker_packages):
        listed = ", ".join(names) or "no package"
        return Verdict(False, f"installs {listed}, not the Docker engine ({' or '.join(course.docker_packages)})")
    root, why = becomes_root(task)
    if root is not True:
        return Verdict(root, why)
    return DONE


def repository_of(url: str) -> str | None:
    """host/owner/name of a git URL, lower-cased; None when it is not one."""
    match = GIT_URL.match(url.strip())
    if not match:
        return None
    host = (match.group("host") or match.group("scp_host")).lower().removeprefix("www.")
    return f"{host}/{match.group('path').strip('/').lower()}"


def clones_repository(task: Task, playbook: Playbook, course: Course) -> Verdict:
    try:
        url = str(_render(task, task.args.get("repo", ""), playbook))
        dest = _render(task, task.args.get("dest", ""), playbook, lenient=True)
    except Unknown as error:
        return Verdict(None, f"clones {course.repository} ({error})")
    if not str(dest or "").strip():
        return Verdict(False, "has no dest to clone into")
    if repository_of(url) != course.repository.lower():
        return Verdict(False, f"clones {url or 'no repository'}, not {course.repository}")
    return DONE


def same_path(first, second) -> bool | None:
    """True or False when two rendered paths settle it, None when an unknown part may decide."""
    if not isinstance(first, str) or not isinstance(second, str):
        return None
    first, second = (posixpath.normpath(path.rstrip("/") or "/") for path in (first, second))
    if first == second:
        return True
    if known(first) and known(second) and first.startswith("/") and second.startswith("/"):
        return False
    return None


def builds_the_clone(task: Task, playbook: Playbook, course: Course) -> Verdict:
    try:
        state = str(_render(task, task.args.get("state", "present"), playbook))
        build = task.args.get("build") if isinstance(task.args.get("build"), dict) else {}
        path = _render(task, build.get("path", task.args.get("path", "")), playbook, lenient=True)
    except Unknown as error:
        return Verdict(None, f"builds the image from the clone ({error})")
    if state != "present":
        return Verdict(False, f"has state {state}, which builds nothing")
    clones = [clone for clone in _running(playbook, {"git"}) if clones_repository(clone, playbook, course).done]
    if not clones:
        return DONE  # required-git says what is missing
    dests = []
    for clone in clones:
        try:
            dests.append(_render(clone, clone.args.get("dest", ""), playbook, lenient=True))
        except Unknown:
            dests.append(None)
    matches = [same_path(path, dest) for dest in dests]
    if True in matches:
        return DONE
    if None in matches:
        return Verdict(None, f"builds from the clone (build path {path!r}, clone at {', '.join(map(repr, dests))})")
    return Verdict(False, f"builds from {path!r}, not from the clone at {', '.join(map(repr, dests))}")


class RequiredApt(Rule):
    """The Docker engine is installed as root with ansible.builtin.apt (or package)."""

    id = "required-apt"
    tags = ("course",)

    def check(self, playbook: Playbook, course: Course) -> Iterator[Finding]:
        tasks = _running(playbook, PACKAGE_MODULES)
        yield from self.judge_step(
            playbook,
            [(task, installs_docker(task, playbook, course)) for task in tasks],
            "no task that runs installs the Docker engine with ansible.builtin.apt",
            "install docker.io, python3-docker and git with ansible.builtin.apt, 'state: present' and"
            " 'become: true'",
        )


class AptUpdateCache(Rule):
    """An apt task refreshes the package cache, which a fresh VM needs."""

    id = "apt-update-cache"
    tags = ("course", "idempotency")

    def check(self, playbook: Playbook, course: Course) -> Iterator[Finding]:
        apt_tasks = _running(playbook, {"apt"})
        if apt_tasks and not any(self._refreshes(task, playbook) for task in apt_tasks):
            yield self.at(
                apt_tasks[0],
                "no apt task refreshes the package cache, so installs fail on a fresh VM",
                "add 'update_cache: true' (with a cache_valid_time) to the apt task",
            )

    @staticmethod
    def _refreshes(task: Task, playbook: Playbook) -> bool:
        try:
            return to_bool(_render(task, task.args.get("update_cache", False), playbook)) is True
        except Unknown:
            return False


class RequiredGit(Rule):
    """The course's DCGAN repository is cloned with ansible.builtin.git."""

    id = "required-git"
    tags = ("course",)

    def check(self, playbook: Playbook, course: Course) -> Iterator[Finding]:
        tasks = _running(playbook, {"git"})
        yield from self.judge_step(
            playbook,
            [(task, clones_repository(task, playbook, course)) for task in tasks],
            f"no task that runs clones {course.repository} with ansible.builtin.git",
            f"clone https://{course.repository}.git with ansible.builtin.git (repo, dest, version)",
        )


class RequiredDockerImage(Rule):
    """The image is built from the clone with community.docker.docker_image and source: build."""

    id = "required-docker-image"
    tags = ("course",)

    def check(self, playbook: Playbook, course: Course) -> Iterator[Finding]:
        tasks = [task for task in _running(playbook, DOCKER_IMAGE_MODULES) if builds_from_source(task, playbook)]
        yield from self.judge_step(
            playbook,
            [(task, builds_the_clone(task, playbook, course)) for task in tasks],
            "no task that runs builds the dist_dcgan image with community.docker.docker_image (source: build)",
            "add a community.docker.docker_image task with 'source: build', 'state: present' and the clone's"
            " folder as 'build: {path: ...}'",
        )


class DockerBuildModule(Rule):
    """No image is built from a shell: docker build, buildx and compose build included."""

    id = "docker-build-module"
    tags = ("course", "idempotency")

    def check(self, playbook: Playbook, course: Course) -> Iterator[Finding]:
        for task in playbook.tasks:
            if commands.builds_image(commands.task_command(task)):
                yield self.at(
                    task,
                    f"the image is built with '{task.module}: docker ... build', which is neither idempotent nor checked",
                    "use community.docker.docker_image with 'source: build' and 'build: {path: ...}'",
                )


class RequiredFetch(Rule):
    """output.txt is brought home with ansible.builtin.fetch."""

    id = "required-fetch"
    tags = ("course",)

    def check(self, playbook: Playbook, course: Course) -> Iterator[Finding]:
        if not any(self._fetches_output(task, playbook, course) for task in _running(playbook, {"fetch"})):
            yield self.at_play(
                playbook,
                f"no task that runs fetches {course.output_name} to the machine running Ansible",
                f"add an ansible.builtin.fetch task with src the run's {course.output_name} and dest under"
                f" {course.results_dir}/",
            )

    @staticmethod
    def _fetches_output(task: Task, playbook: Playbook, course: Course) -> bool:
        try:
            source = str(_render(task, task.args.get("src", ""), playbook, lenient=True))
        except Unknown:
            return False
        return posixpath.basename(source) == course.output_name


class FetchIntoResultados(Rule):
    """Fetched files land under resultados/ beside the playbook, after path normalisation."""

    id = "fetch-into-resultados"
    tags = ("course",)

    def check(self, playbook: Playbook, course: Course) -> Iterator[Finding]:
        for task in playbook.tasks:
            if task.module != "fetch":
                continue
            raw = task.args.get("dest", "")
            try:
                dest = str(_render(task, raw, playbook, lenient=True))
            except Unknown as error:
                dest = f"{raw} ({error})"
            if not inside_results(dest, playbook.directory, course.results_dir):
                yield self.at(
                    task,
                    f"the file is fetched to '{dest}', which is not inside {course.results_dir}/ beside the playbook",
                    f"set the fetch dest to {course.results_dir}/{{{{ inventory_hostname }}}}/{course.output_name}",
                )


def inside_results(dest: str, playbook_dir: str, results_dir: str) -> bool:
    """Whether dest, relative to the playbook as fetch reads it, is inside results_dir."""
    if not dest or "{?}" in dest or dest.startswith("~"):
        return False
    path = dest if posixpath.isabs(dest) else posixpath.join(playbook_dir, dest)
    relative = posixpath.relpath(posixpath.normpath(path), posixpath.normpath(playbook_dir))
    parts = relative.split("/")
    return parts[0] == results_dir and ".." not in parts
