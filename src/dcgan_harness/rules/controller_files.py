"""No file of the machine running Ansible reaches the VM or the play.

copy, template, script, unarchive and assemble read their ``src`` on the
machine running Ansible unless told ``remote_src``; include_vars reads a
file there. Only files in the playbook's own folder may be read, and a
graded submission is its configure.yaml alone.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator

from .base import Course, Rule
from .findings import Finding
from .model import Playbook, Task
from .templates import Unknown, to_bool
from .values import known, per_item, render

# Modules whose src is read on the controller, and whether remote_src can send it to the VM instead.
CONTROLLER_SOURCES = {"copy": True, "template": False, "script": False, "unarchive": True, "assemble": True}
VARS_FILES = frozenset({"include_vars"})


def _source(task: Task) -> object:
    if task.module == "script":
        return task.args.get("cmd") or task.args.get("_raw_params") or ""
    return task.args.get("src", "")


def _from_vm(task: Task, playbook: Playbook) -> bool | None:
    if not CONTROLLER_SOURCES.get(task.module):
        return False
    try:
        return to_bool(render(task, task.args.get("remote_src", False), playbook))
    except Unknown:
        return None


def outside_playbook(path: str, playbook_dir: str) -> bool:
    if path.startswith("~"):
        return True
    absolute = path if posixpath.isabs(path) else posixpath.join(playbook_dir, path)
    relative = posixpath.relpath(posixpath.normpath(absolute), posixpath.normpath(playbook_dir))
    return relative == ".." or relative.startswith("../")


def _settled_prefix_inside(path: str, playbook_dir: str) -> bool:
    """A path whose known start already keeps it in the playbook's folder: files/{?}.txt."""
    settled = path.split("{?}", 1)[0]
    if not settled or settled.startswith(("/", "~")) and not settled.startswith(playbook_dir.rstrip("/") + "/"):
        return False
    folder = settled.rsplit("/", 1)[0] if "/" in settled else ""
    return ".." not in folder.split("/") and not outside_playbook(folder or ".", playbook_dir)


class ControllerFiles(Rule):
    """copy, template, script, unarchive and assemble read no file outside the playbook's folder."""

    id = "controller-files"
    tags = ("course", "security")

    def check(self, playbook: Playbook, course: Course) -> Iterator[Finding]:
        for task in playbook.tasks:
            if task.module in VARS_FILES:
                yield self.at(
                    task,
                    "include_vars reads a file on the machine running Ansible",
                    "put the variables in the play's vars block",
                )
            elif task.module in CONTROLLER_SOURCES and (task.module == "script" or "src" in task.args) and task.enabled():
                yield from self._source_problems(task, playbook)

    def _source_problems(self, task: Task, playbook: Playbook) -> Iterator[Finding]:
        remote = _from_vm(task, playbook)
        if remote is True:
            return
        fix = (
            "write the file's text with 'content:' (copy) or keep it beside configure.yaml; to copy a file that is"
            " on the VM, set 'remote_src: true'"
        )
        if task.module == "assemble":
            yield self.at(task, "assemble reads its fragments on the machine running Ansible", fix)
            return
        # Judged by allow-list, as delegation is: a path the playbook does not
        # settle may lead anywhere on the machine running Ansible.
        try:
            paths = [(str(value).split() or [""])[0] for value in per_item(task, _source(task), playbook, lenient=True)]
        except Unknown:
            paths = ["{?}"]
        for path in paths:
            if not known(path) and not _settled_prefix_inside(path, playbook.directory):
                yield self.at(
                    task,
                    f"{task.module} reads {path!r} on the machine running Ansible, a path the playbook does not settle",
                    fix,
                )
                return
            if known(path) and outside_playbook(path, playbook.directory):
                yield self.at(
                    task,
                    f"{task.module} reads {path} on the machine running Ansible, outside the playbook's folder",
                    fix,
                )
                return
