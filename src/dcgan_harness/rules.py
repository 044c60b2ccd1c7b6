"""Rule checks over a parsed configure.yaml.

Grading automation runs these on students' playbooks, so every finding names
the rule, the task and its line, and says how to fix it. The checks read the
playbook as data; nothing in it is executed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml

# Keys that configure a task rather than name its module.
TASK_KEYWORDS = frozenset(
    """
    name action args async become become_exe become_flags become_method become_user
    changed_when check_mode collections connection debugger delay delegate_facts
    delegate_to diff environment failed_when ignore_errors ignore_unreachable
    local_action loop loop_control module_defaults no_log notify poll port
    register remote_user retries run_once tags throttle timeout until vars when
    listen block rescue always
    """.split()
)

MODULES_NEEDING_ROOT = frozenset({"apt", "service", "systemd", "systemd_service", "group", "user"})
LOCALHOST_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
PIPE_LOOKUP = re.compile(r"""(lookup|query|q)\(\s*['"]pipe['"]""")
DOCKER_BUILD_COMMAND = re.compile(r"\bdocker\s+(image\s+)?build\b")
DOCKER_RUN_COMMAND = re.compile(r"\bdocker\s+(container\s+)?run\b")
SIMPLE_VAR = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class PlaybookError(Exception):
    """The playbook cannot be read as YAML; the message says where and why."""


@dataclass(frozen=True)
class Finding:
    rule: str
    line: int
    task: str
    message: str
    fix: str

    def format(self, path: str | Path) -> str:
        return f"{path}:{self.line}: [{self.rule}] {self.task}: {self.message}. Fix: {self.fix}"


@dataclass(frozen=True)
class Task:
    """One task with what it inherits from its play and enclosing blocks."""

    data: dict
    line: int
    inherited_become: bool
    play_vars: dict

    def resolve(self, text: str) -> str:
        """Substitute the play's plain {{ var }} references, so graders see real paths."""
        for _ in range(5):
            resolved = SIMPLE_VAR.sub(lambda match: str(self.play_vars.get(match.group(1), match.group(0))), text)
            if resolved == text:
                break
            text = resolved
        return text

    @property
    def name(self) -> str:
        return str(self.data.get("name") or "")

    @property
    def label(self) -> str:
        return f"task '{self.name}'" if self.name else f"unnamed task at line {self.line}"

    @property
    def module(self) -> str:
        """Short module name (apt for ansible.builtin.apt), or '' if none."""
        if "local_action" in self.data:
            return _short_module_name(_action_module(self.data["local_action"]))
        if "action" in self.data:
            return _short_module_name(_action_module(self.data["action"]))
        for key in self.data:
            if key not in TASK_KEYWORDS and not str(key).startswith("with_"):
                return _short_module_name(str(key))
        return ""

    @property
    def args(self) -> Any:
        for key in self.data:
            if _short_module_name(str(key)) == self.module and key not in TASK_KEYWORDS:
                return self.data[key]
        return self.data.get("args", {})

    @property
    def arg_dict(self) -> dict:
        args = self.args
        merged = dict(self.data.get("args") or {}) if isinstance(self.data.get("args"), dict) else {}
        if isinstance(args, dict):
            merged.update(args)
        return merged

    @property
    def command_text(self) -> str:
        """The command line of a shell/command task, in any of its spellings."""
        args = self.args
        if isinstance(args, str):
            return args
        if isinstance(args, dict):
            return str(args.get("cmd") or args.get("argv") or args.get("_raw_params") or "")
        return ""

    @property
    def becomes(self) -> bool:
        if "become" in self.data:
            return _truthy(self.data["become"])
        return self.inherited_become


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"true", "yes", "on", "1"}
    return bool(value)


def _short_module_name(name: str) -> str:
    return name.rsplit(".", 1)[-1] if name else ""


def _action_module(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("module", ""))
    return str(value).split()[0] if str(value).strip() else ""


# --- Loading with line numbers -----------------------------------------------


class _LineMap(dict):
    line = 0


class _LineLoader(yaml.SafeLoader):
    """Safe loader whose mappings remember the line they start on."""

    def construct_mapping(self, node, deep=False):
        mapping = _LineMap(super().construct_mapping(node, deep=deep))
        mapping.line = node.start_mark.line + 1
        return mapping


_LineLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _LineLoader.construct_mapping
)
# Ansible's !unsafe and !vault tags are plain strings for these checks.
_LineLoader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))
_LineLoader.add_constructor("!vault", lambda loader, node: loader.construct_scalar(node))


def load_playbook(path: str | Path) -> list:
    """Parse a playbook, turning every YAML problem into a one-line PlaybookError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlaybookError(f"{path}: no such file; pass the path of your configure.yaml") from None
    except (OSError, UnicodeDecodeError) as error:
        raise PlaybookError(f"{path}: cannot be read ({error}); save it as UTF-8 text") from None
    try:
        data = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = error.problem or error.context or "invalid YAML"
        hint = "replace tabs with spaces" if "\t" in _line_at(text, mark) else "check the indentation"
        raise PlaybookError(f"{where}: YAML syntax error: {problem}; {hint}") from None
    except yaml.YAMLError as error:
        raise PlaybookError(f"{path}: YAML error: {str(error).splitlines()[0]}") from None
    if not isinstance(data, list):
        raise PlaybookError(f"{path}: a playbook is a YAML list of plays, but this file holds a {type(data).__name__}")
    return data


def _line_at(text: str, mark) -> str:
    if mark is None:
        return ""
    lines = text.splitlines()
    return lines[mark.line] if mark.line < len(lines) else ""


# --- Walking plays and tasks ---------------------------------------------------

TASK_SECTIONS = ("pre_tasks", "tasks", "post_tasks", "handlers")


def iter_tasks(playbook: list) -> Iterator[Task]:
    for play in _plays(playbook):
        play_become = _truthy(play.get("become", False))
        play_vars = play.get("vars") if isinstance(play.get("vars"), dict) else {}
        for section in TASK_SECTIONS:
            yield from _walk(play.get(section) or [], play_become, play_vars)


def _plays(playbook: list) -> Iterator[dict]:
    for play in playbook:
        if isinstance(play, dict):
            yield play


def _walk(tasks: Any, inherited_become: bool, play_vars: dict) -> Iterator[Task]:
    if not isinstance(tasks, list):
        return
    for item in tasks:
        if not isinstance(item, dict):
            continue
        if "block" in item:
            become = _truthy(item["become"]) if "become" in item else inherited_become
            yield Task(item, getattr(item, "line", 0), inherited_become, play_vars)
            for section in ("block", "rescue", "always"):
                yield from _walk(item.get(section) or [], become, play_vars)
        else:
            yield Task(item, getattr(item, "line", 0), inherited_become, play_vars)


def _is_block(task: Task) -> bool:
    return "block" in task.data


def _module_tasks(playbook: list) -> list[Task]:
    return [task for task in iter_tasks(playbook) if not _is_block(task)]


# --- The rules ------------------------------------------------------------------


def check_task_names(playbook: list) -> Iterator[Finding]:
    for task in iter_tasks(playbook):
        if not task.name.strip():
            yield Finding(
                "task-name",
                task.line,
                task.label,
                "the task has no name",
                "add a 'name:' that says in a sentence what the task does",
            )


def check_task_structure(playbook: list) -> Iterator[Finding]:
    for task in _module_tasks(playbook):
        modules = [
            str(key) for key in task.data
            if key not in TASK_KEYWORDS and not str(key).startswith("with_")
        ]
        if len(modules) > 1:
            yield Finding(
                "task-structure",
                task.line,
                task.label,
                f"the task has {', '.join(repr(key) for key in modules)} side by side, but one task runs one module",
                f"indent the module's options under '{modules[0]}:' or split the task in two",
            )


def check_apt_update_cache(playbook: list) -> Iterator[Finding]:
    apt_tasks = [task for task in _module_tasks(playbook) if task.module == "apt"]
    if not apt_tasks:
        yield Finding(
            "required-apt",
            _first_play_line(playbook),
            "play",
            "no task installs packages with ansible.builtin.apt",
            "install docker.io, python3-docker and git with ansible.builtin.apt",
        )
        return
    if not any(_truthy(task.arg_dict.get("update_cache", False)) for task in apt_tasks):
        task = apt_tasks[0]
        yield Finding(
            "apt-update-cache",
            task.line,
            task.label,
            "no apt task refreshes the package cache, so installs fail on a fresh VM",
            "add 'update_cache: true' (with a cache_valid_time) to the apt task",
        )


def check_git_clone(playbook: list) -> Iterator[Finding]:
    if not any(task.module == "git" for task in _module_tasks(playbook)):
        yield Finding(
            "required-git",
            _first_play_line(playbook),
            "play",
            "no task clones the DCGAN repository with ansible.builtin.git",
            "clone the repository with ansible.builtin.git (repo, dest, version)",
        )


def check_docker_image_build(playbook: list) -> Iterator[Finding]:
    tasks = _module_tasks(playbook)
    for task in tasks:
        if task.module in {"shell", "command", "raw"} and DOCKER_BUILD_COMMAND.search(task.command_text):
            yield Finding(
                "docker-build-module",
                task.line,
                task.label,
                f"the image is built with '{task.module}: docker build', which is neither idempotent nor checked",
                "use community.docker.docker_image with 'source: build' and 'build: {path: ...}'",
            )
    builds = [task for task in tasks if task.module == "docker_image" and task.arg_dict.get("source") == "build"]
    if not builds:
        yield Finding(
            "required-docker-image",
            _first_play_line(playbook),
            "play",
            "no task builds the dist_dcgan image with community.docker.docker_image (source: build)",
            "add a community.docker.docker_image task with 'source: build' and the clone as build path",
        )


def check_fetch_into_results(playbook: list) -> Iterator[Finding]:
    fetches = [task for task in _module_tasks(playbook) if task.module == "fetch"]
    if not fetches:
        yield Finding(
            "required-fetch",
            _first_play_line(playbook),
            "play",
            "no task fetches output.txt to the machine running Ansible",
            "add an ansible.builtin.fetch task with dest under resultados/",
        )
        return
    for task in fetches:
        dest = task.resolve(str(task.arg_dict.get("dest", "")))
        if "resultados" not in dest:
            yield Finding(
                "fetch-into-resultados",
                task.line,
                task.label,
                f"output.txt is fetched to '{dest}', outside resultados/",
                "set the fetch dest to resultados/{{ inventory_hostname }}/output.txt",
            )


def check_become(playbook: list) -> Iterator[Finding]:
    for play in _plays(playbook):
        if _truthy(play.get("become", False)):
            yield Finding(
                "become-unneeded",
                getattr(play, "line", 0),
                f"play '{play.get('name', '')}'",
                "the whole play runs as root, including tasks that do not need it",
                "remove play-level 'become: true' and set it on the apt, service, group and user tasks",
            )
    for task in _module_tasks(playbook):
        needs_root = task.module in MODULES_NEEDING_ROOT
        if needs_root and not task.becomes:
            yield Finding(
                "become-missing",
                task.line,
                task.label,
                f"{task.module} changes the system but the task does not become root",
                "add 'become: true' to the task",
            )
        elif not needs_root and _truthy(task.data.get("become", False)):
            yield Finding(
                "become-unneeded",
                task.line,
                task.label,
                f"{task.module or 'the task'} does not need root but the task becomes root",
                "remove 'become: true' from the task",
            )


def check_async_poll(playbook: list) -> Iterator[Finding]:
    for task in _module_tasks(playbook):
        if not (_is_image_build(task) or _is_container_run(task)):
            continue
        missing = [key for key in ("async", "poll") if key not in task.data]
        if missing:
            what = "builds the image" if _is_image_build(task) else "runs the DCGAN"
            yield Finding(
                "async-poll",
                task.line,
                task.label,
                f"the task {what} for many minutes without {' and '.join(missing)}, so a dropped SSH session kills it",
                "add 'async: <max seconds>' and 'poll: <seconds between checks>' to the task",
            )


def _is_image_build(task: Task) -> bool:
    if task.module == "docker_image":
        return task.arg_dict.get("source") == "build"
    return task.module in {"shell", "command"} and bool(DOCKER_BUILD_COMMAND.search(task.command_text))


def _is_container_run(task: Task) -> bool:
    if task.module == "docker_container":
        return True
    return task.module in {"shell", "command"} and bool(DOCKER_RUN_COMMAND.search(task.command_text))


def check_runs_remotely(playbook: list) -> Iterator[Finding]:
    for play in _plays(playbook):
        line = getattr(play, "line", 0)
        label = f"play '{play.get('name', '')}'"
        if str(play.get("hosts", "")).strip() in LOCALHOST_NAMES:
            yield Finding(
                "local-execution", line, label, "the play targets the machine running Ansible",
                "set 'hosts: cloud'",
            )
        if str(play.get("connection", "")).strip() == "local":
            yield Finding(
                "local-execution", line, label, "the play uses 'connection: local'",
                "remove 'connection: local' so the play runs over SSH on the VMs",
            )
    for task in iter_tasks(playbook):
        for message, fix in _local_execution_problems(task):
            yield Finding("local-execution", task.line, task.label, message, fix)


def _local_execution_problems(task: Task) -> Iterator[tuple[str, str]]:
    if "local_action" in task.data:
        yield "the task uses local_action", "run the module on the VM instead of local_action"
    if str(task.data.get("delegate_to", "")).strip() in LOCALHOST_NAMES:
        yield "the task is delegated to localhost", "remove 'delegate_to: localhost'"
    if str(task.data.get("connection", "")).strip() == "local":
        yield "the task uses 'connection: local'", "remove 'connection: local'"
    if "with_pipe" in task.data or _mentions_pipe_lookup(task.data):
        yield (
            "the task runs a command on the machine running Ansible through the pipe lookup",
            "run the command on the VM with ansible.builtin.command and register its result",
        )


def _mentions_pipe_lookup(value: Any) -> bool:
    if isinstance(value, str):
        return bool(PIPE_LOOKUP.search(value))
    if isinstance(value, dict):
        return any(_mentions_pipe_lookup(item) for item in value.values())
    if isinstance(value, list):
        return any(_mentions_pipe_lookup(item) for item in value)
    return False


def check_self_contained(playbook: list) -> Iterator[Finding]:
    for play in _plays(playbook):
        line = getattr(play, "line", 0)
        if "import_playbook" in play:
            yield Finding(
                "self-contained", line, "playbook", "the playbook imports another playbook",
                "put every task in configure.yaml itself",
            )
        for key in ("roles", "vars_files"):
            if play.get(key):
                yield Finding(
                    "self-contained", line, f"play '{play.get('name', '')}'",
                    f"the play uses '{key}', which is not graded with configure.yaml",
                    f"move what '{key}' brings into the play's tasks and vars block",
                )
    for task in _module_tasks(playbook):
        if task.module in {"include_tasks", "import_tasks", "include_role", "import_role", "include_vars"}:
            yield Finding(
                "self-contained", task.line, task.label,
                f"the task uses {task.module}, which is not graded with configure.yaml",
                "write the included tasks or vars into configure.yaml itself",
            )


def _first_play_line(playbook: list) -> int:
    for play in _plays(playbook):
        return getattr(play, "line", 1)
    return 1


RULES = (
    check_task_names,
    check_task_structure,
    check_apt_update_cache,
    check_git_clone,
    check_docker_image_build,
    check_fetch_into_results,
    check_become,
    check_async_poll,
    check_runs_remotely,
    check_self_contained,
)

RULE_IDS = frozenset(
    {
        "task-name",
        "task-structure",
        "required-apt",
        "apt-update-cache",
        "required-git",
        "docker-build-module",
        "required-docker-image",
        "required-fetch",
        "fetch-into-resultados",
        "become-missing",
        "become-unneeded",
        "async-poll",
        "local-execution",
        "self-contained",
    }
)


def check_playbook(playbook: list) -> list[Finding]:
    findings = [finding for rule in RULES for finding in rule(playbook)]
    return sorted(findings, key=lambda finding: (finding.line, finding.rule))


def check_file(path: str | Path) -> list[Finding]:
    """Findings for the playbook at path; raises PlaybookError for unreadable YAML."""
    return check_playbook(load_playbook(path))
