"""Plays, blocks and tasks as Ansible itself reads them.

A task's module and arguments come from Ansible's own ``ModuleArgsParser``
(every spelling: ``apt: name=git``, ``action: apt name=git``,
``local_action``, FQCNs, ``args:``), and the keys that are keywords rather
than modules from the attribute lists of ``ansible.playbook``. What a task
inherits (become, variables, conditions, connection) is read through its
enclosing blocks and play, in Ansible's order of precedence.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from .loader import line_of
from .templates import Resolver, condition_value, to_bool

TASK_SECTIONS = ("pre_tasks", "tasks", "post_tasks", "handlers")
# The sections a play runs in order, before its notified handlers.
RUN_SECTIONS = ("pre_tasks", "tasks", "post_tasks")
BLOCK_SECTIONS = ("block", "rescue", "always")
# What a task that runs does to the rest of the play: goes on, fails the host
# (no later task or play runs for it), or ends the play (later plays still run).
GOES_ON, FAILS, ENDS_PLAY = "goes on", "fails", "ends the play"
FALSE_COMMANDS = frozenset({"false", "/bin/false", "/usr/bin/false"})


@functools.cache
def _ansible():
    """Ansible's parser and keyword lists, loaded once and only when needed."""
    from ansible.errors import AnsibleError
    from ansible.module_utils.common.sentinel import Sentinel
    from ansible.parsing.mod_args import ModuleArgsParser
    from ansible.playbook.block import Block
    from ansible.playbook.handler import Handler
    from ansible.playbook.play import Play
    from ansible.playbook.task import Task
    from ansible.plugins.loader import init_plugin_loader

    # Makes collection modules (community.docker.docker_image) resolvable.
    init_plugin_loader()
    try:
        from ansible._internal._display_utils import DeferredWarningContext

        def quiet():
            return DeferredWarningContext(variables={})
    except ImportError:  # older ansible-core prints its deprecation warnings instead
        quiet = nullcontext
    task_keywords = frozenset(Task.fattributes) | frozenset(Handler.fattributes) | {"local_action", "static"}
    return {
        "parser": ModuleArgsParser,
        "error": AnsibleError,
        "unset": Sentinel,
        "quiet": quiet,
        "task_keywords": task_keywords,
        "block_keywords": frozenset(Block.fattributes),
        "play_keywords": frozenset(Play.fattributes) | {"import_playbook", "ansible.builtin.import_playbook"},
    }


def task_keywords() -> frozenset:
    return _ansible()["task_keywords"]


def block_keywords() -> frozenset:
    return _ansible()["block_keywords"]


def play_keywords() -> frozenset:
    return _ansible()["play_keywords"]


def short_name(action: str) -> str:
    """apt for apt, ansible.builtin.apt and ansible.legacy.apt."""
    return action.rsplit(".", 1)[-1] if action else ""


@dataclass
class Node:
    """A play, block or task: its raw mapping and where it sits."""

    data: dict
    parent: Node | None = None
    section: str = ""

    @property
    def line(self) -> int:
        return line_of(self.data)

    @property
    def name(self) -> str:
        return str(self.data.get("name") or "")

    @property
    def kind(self) -> str:
        return "play" if self.parent is None else "block" if "block" in self.data else "task"

    @property
    def label(self) -> str:
        if self.name:
            return f"{self.kind} '{self.name}'"
        return f"unnamed {self.kind} at line {self.line}"

    @property
    def play(self) -> Node:
        node = self
        while node.parent is not None:
            node = node.parent
        return node

    def chain(self) -> Iterator[Node]:
        """This node, then every enclosing block, then the play."""
        node: Node | None = self
        while node is not None:
            yield node
            node = node.parent

    def nearest(self, keyword: str) -> tuple[Any, Node] | None:
        """The value of a keyword that blocks and plays pass down, and who set it."""
        for node in self.chain():
            if keyword in node.data:
                return node.data[keyword], node
        return None

    def nearest_variable(self, name: str) -> tuple[Any, Node] | None:
        for node in self.chain():
            if name in node.own_vars:
                return node.own_vars[name], node
        return None

    @property
    def own_vars(self) -> dict:
        value = self.data.get("vars")
        return value if isinstance(value, dict) else {}

    @property
    def variables(self) -> dict:
        """The variables the playbook itself defines for this node, innermost winning."""
        merged: dict = {}
        for node in reversed(list(self.chain())):
            merged.update(node.own_vars)
        return merged

    def resolver(self, lenient: bool = False, extra: dict | None = None) -> Resolver:
        variables = self.variables
        if extra:
            # Ansible's magic variables cannot be overridden by play vars.
            variables = {**variables, **extra}
        return Resolver(variables, lenient=lenient)

    @property
    def conditions(self) -> list:
        """Every ``when`` that must hold for this node to run, outermost first."""
        found = []
        for node in reversed(list(self.chain())):
            value = node.data.get("when")
            if value is None:
                continue
            found.extend(value if isinstance(value, list) else [value])
        return found

    @property
    def tags(self) -> set[str]:
        found: set[str] = set()
        for node in self.chain():
            value = node.data.get("tags")
            if isinstance(value, str):
                found.update(tag.strip() for tag in value.split(","))
            elif isinstance(value, list):
                found.update(str(tag) for tag in value)
        return found


@dataclass
class Task(Node):
    """A task that runs one module, normalised the way Ansible normalises it."""

    action: str = ""
    args: dict = field(default_factory=dict)
    delegate_to: Any = None
    # Why Ansible would refuse the task, if it would.
    problem: str = ""
    # Keys that are neither a keyword nor the task's module.
    stray_keys: list[str] = field(default_factory=list)

    @property
    def module(self) -> str:
        return short_name(self.action)

    def enabled(self) -> bool:
        """False for a task switched off where it stands: a false ``when``, the never tag, check_mode."""
        if "never" in self.tags:
            return False
        if any(node.data.get("check_mode") is True for node in self.chain()):
            return False
        resolver = self.resolver()
        return not any(condition_value(condition, resolver) is False for condition in self.conditions)

    def effect_on_play(self) -> str:
        """GOES_ON, or FAILS / ENDS_PLAY when the task certainly stops the host."""
        if self.module == "meta" and str(self.args.get("_raw_params", "")).strip() in {"end_play", "end_host"}:
            return ENDS_PLAY
        if not self._certainly_fails():
            return GOES_ON
        if "failed_when" in self.data:
            return GOES_ON
        ignored = self.nearest("ignore_errors")
        if ignored is not None and to_bool(ignored[0]) is not False:
            return GOES_ON
        return FAILS

    def _certainly_fails(self) -> bool:
        if self.module == "fail":
            return True
        if self.module == "assert":
            that = self.args.get("that")
            conditions = that if isinstance(that, list) else [that]
            resolver = self.resolver()
            return any(condition_value(condition, resolver) is False for condition in conditions)
        if self.module in {"command", "shell", "raw"}:
            text = str(self.args.get("cmd") or self.args.get("_raw_params") or "").strip()
            return text in FALSE_COMMANDS or re.fullmatch(r"exit\s+0*[1-9]\d*", text) is not None
        return False

    @property
    def notifies(self) -> set[str]:
        value = self.data.get("notify")
        names = value if isinstance(value, list) else [value] if value else []
        return {str(name) for name in names}

    @property
    def listens_to(self) -> set[str]:
        value = self.data.get("listen")
        names = value if isinstance(value, list) else [value] if value else []
        return {str(name) for name in names} | ({self.name} if self.name else set())


@dataclass
class Playbook:
    plays: list[Node]
    blocks: list[Node]
    tasks: list[Task]
    # Where the playbook lives; `{{ playbook_dir }}` renders to it.
    directory: str

    @property
    def nodes(self) -> list[Node]:
        return sorted([*self.plays, *self.blocks, *self.tasks], key=lambda node: node.line)

    @property
    def first_line(self) -> int:
        return self.plays[0].line if self.plays else 1

    def runs(self, task: Task) -> bool:
        """Whether the task does its work on a plain run that meets no error.

        Not when it is switched off, sits in a ``rescue``, is a handler no
        task that runs notifies, or comes after a task that certainly fails
        (a ``fail``, a false ``assert``, ``command: "false"``) or ends the play.
        """
        return id(task) in self._plain_run

    @functools.cached_property
    def _plain_run(self) -> frozenset[int]:
        nodes = {id(node.data): node for node in [*self.blocks, *self.tasks]}
        reached: set[int] = set()
        for play in self.plays:
            effect = GOES_ON
            for section in RUN_SECTIONS:
                effect = _run_items(play.data.get(section), nodes, reached, counts=True)
                if effect != GOES_ON:
                    break
            if effect != FAILS:
                _run_notified_handlers(play, nodes, reached)
            if effect == FAILS:
                # A failed host leaves the play and every later play.
                break
        return frozenset(reached)


def _run_items(items: Any, nodes: dict, reached: set[int], counts: bool) -> str:
    """Walk tasks in the order Ansible runs them; returns what the last one did to the play."""
    if not isinstance(items, list):
        return GOES_ON
    for item in items:
        node = nodes.get(id(item))
        if node is None:
            continue
        if isinstance(node, Task):
            effect = _run_task(node, reached, counts)
        else:
            effect = _run_block(item, nodes, reached, counts)
        if effect != GOES_ON:
            return effect
    return GOES_ON


def _run_task(task: Task, reached: set[int], counts: bool) -> str:
    if not task.enabled():
        return GOES_ON
    if counts:
        reached.add(id(task))
    return task.effect_on_play()


def _run_block(item: dict, nodes: dict, reached: set[int], counts: bool) -> str:
    effect = _run_items(item.get("block"), nodes, reached, counts)
    if effect == FAILS and item.get("rescue"):
        # A rescue runs only after a failure, so its tasks never count as steps.
        effect = _run_items(item.get("rescue"), nodes, reached, counts=False)
    after = _run_items(item.get("always"), nodes, reached, counts)
    return after if after != GOES_ON else effect


def _run_notified_handlers(play: Node, nodes: dict, reached: set[int]) -> None:
    notified: set[str] = set()
    for task in nodes.values():
        if isinstance(task, Task) and id(task) in reached and task.play is play and not _never_changes(task):
            notified |= task.notifies
    for handler in _handler_tasks(play.data.get("handlers"), nodes):
        if handler.listens_to & notified and handler.enabled():
            reached.add(id(handler))


def _handler_tasks(items: Any, nodes: dict) -> Iterator[Task]:
    if not isinstance(items, list):
        return
    for item in items:
        node = nodes.get(id(item))
        if isinstance(node, Task):
            yield node
        elif node is not None:
            for section in BLOCK_SECTIONS:
                yield from _handler_tasks(item.get(section), nodes)


def _never_changes(task: Task) -> bool:
    """A task with changed_when false never notifies its handlers."""
    return "changed_when" in task.data and condition_value(task.data["changed_when"], task.resolver()) is False


def read_playbook(data: list, directory: str = "/playbook") -> Playbook:
    plays = [Node(play) for play in data if isinstance(play, dict)]
    blocks: list[Node] = []
    tasks: list[Task] = []
    for play in plays:
        for section in TASK_SECTIONS:
            _walk(play.data.get(section), play, section, blocks, tasks)
    return Playbook(plays, blocks, tasks, directory)


def _walk(items: Any, parent: Node, section: str, blocks: list, tasks: list) -> None:
    if not isinstance(items, list):
        return
    for item in items:
        if not isinstance(item, dict):
            continue
        if "block" in item:
            block = Node(item, parent, section)
            blocks.append(block)
            for child_section in BLOCK_SECTIONS:
                _walk(item.get(child_section), block, child_section, blocks, tasks)
        else:
            tasks.append(normalise_task(Task(item, parent, section)))


def _collections(task: Task) -> list | None:
    found = task.nearest("collections")
    return list(found[0]) if found and isinstance(found[0], list) else None


def normalise_task(task: Task) -> Task:
    """Fill in the module, its arguments and any reason Ansible would refuse the task."""
    ansible = _ansible()
    data = {str(key): value for key, value in task.data.items()}
    parser = ansible["parser"](data, collection_list=_collections(task))
    try:
        with ansible["quiet"]():
            task.action, args, delegate_to = parser.parse()
    except ansible["error"] as error:
        task.problem = _first_line(error)
        fallback = _uninstalled_collection_module(data)
        if fallback is None:
            return task
        task.problem = ""
        task.action, args, delegate_to = fallback
    task.args = dict(args or {})
    task.delegate_to = None if delegate_to is ansible["unset"] else delegate_to
    task.action = parser._resolved_action or task.action
    action_key = _action_key(data, task.action)
    task.stray_keys = [
        key for key in data
        if key not in ansible["task_keywords"] and not key.startswith("with_") and key != action_key
    ]
    return task


def _uninstalled_collection_module(data: dict) -> tuple | None:
    """A task whose one module is an FQCN from a collection this machine lacks.

    Ansible on the grader's machine may have fewer collections than the
    student's; such a module is taken at its word rather than reported.
    """
    ansible = _ansible()
    candidates = [key for key in data if key not in ansible["task_keywords"] and not key.startswith("with_")]
    if len(candidates) != 1 or candidates[0].count(".") < 2:
        return None
    try:
        with ansible["quiet"]():
            return ansible["parser"](data).parse(skip_action_validation=True)
    except ansible["error"]:
        return None


def _action_key(data: dict, action: str) -> str:
    """The key that named the module, matched through its short name."""
    for key in data:
        if key == action or short_name(key) == short_name(action):
            return key
    return ""


def _first_line(error: Exception) -> str:
    message = getattr(error, "message", None) or str(error)
    return str(message).splitlines()[0].rstrip(".")
