"""The steps the course asks for, each done with the module it names.

A step counts only when its task runs on a plain run of the playbook: a
task switched off with a constant-false ``when``, the ``never`` tag or
``check_mode``, or one that sits in a handler or a ``rescue``, does not.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator

from . import commands
from .base import Course, Rule
from .findings import Finding
from .model import Playbook, Task
from .templates import Unknown, to_bool

DOCKER_IMAGE_MODULES = frozenset({"docker_image"})
# Values of ansible magic variables a path may use; placeholders, not guesses.
HOST_PLACEHOLDER = "<inventory_hostname>"


def _real(playbook: Playbook, module: str) -> list[Task]:
    return [task for task in playbook.tasks if task.module == module and task.runs_for_real()]


def _render(task: Task, value, playbook: Playbook, lenient: bool = False):
    magic = {
        "playbook_dir": playbook.directory,
        "inventory_hostname": HOST_PLACEHOLDER,
        "inventory_hostname_short": HOST_PLACEHOLDER,
    }
    return task.resolver(lenient=lenient, extra=magic).render(value)


def builds_from_source(task: Task, playbook: Playbook) -> bool:
    """A docker_image task with ``source: build``, the variable form included."""
    if task.module not in DOCKER_IMAGE_MODULES:
        return False
    try:
        return _render(task, task.args.get("source", ""), playbook) == "build"
    except Unknown:
        return False


class RequiredApt(Rule):
    """Packages are installed with ansible.builtin.apt."""

    id = "required-apt"
    tags = ("course",)

    def check(self, playbook: Playbook, course: Course) -> Iterator[Finding]:
        if not _real(playbook, "apt"):
            yield self.at_play(
                playbook,
                "no task that runs installs packages with ansible.builtin.apt",
                "install docker.io, python3-docker and git with ansible.builtin.apt",
            )


class AptUpdateCache(Rule):
    """An apt task refreshes the package cache, which a fresh VM needs."""

    id = "apt-update-cache"
    tags = ("course", "idempotency")

    def check(self, playbook: Playbook, course: Course) -> Iterator[Finding]:
        apt_tasks = _real(playbook, "apt")
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
    """The DCGAN repository is cloned with ansible.builtin.git."""

    id = "required-git"
    tags = ("course",)

    def check(self, playbook: Playbook, course: Course) -> Iterator[Finding]:
        if not _real(playbook, "git"):
            yield self.at_play(
                playbook,
                "no task that runs clones the DCGAN repository with ansible.builtin.git",
                "clone the repository with ansible.builtin.git (repo, dest, version)",
            )


class RequiredDockerImage(Rule):
    """The image is built with community.docker.docker_image and source: build."""

    id = "required-docker-image"
    tags = ("course",)

    def check(self, playbook: Playbook, course: Course) -> Iterator[Finding]:
        if not any(builds_from_source(task, playbook) and task.runs_for_real() for task in playbook.tasks):
            yield self.at_play(
                playbook,
                "no task that runs builds the dist_dcgan image with community.docker.docker_image (source: build)",
                "add a community.docker.docker_image task with 'source: build' and the clone as build path",
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
        if not any(self._fetches_output(task, playbook, course) for task in _real(playbook, "fetch")):
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
