"""Nothing runs on the machine running Ansible: every step reaches the VMs only.

Judged by allow-list, because the ways to run a command on the controller
are many: host patterns and delegation may only name the course's group,
connections may only be SSH, no connection variable may be set, a lookup
(which always runs on the controller) must name a plugin from a short list
of pure data lookups, spelt as a literal, and no template may reach Python's
internals (older ansible-core renders `lipsum.__globals__` on the controller).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from jinja2 import nodes

from .base import Course, Rule
from .findings import Finding
from .model import BLOCK_SECTIONS, TASK_SECTIONS, Node, Playbook, Task
from .templates import internal_reaches, is_template, lookup_calls, parse, strings_in

# Lookups that only reshape data given to them; every other one reads or runs
# something on the controller (pipe, lines, file, template, url, ...).
SAFE_LOOKUPS = frozenset(
    {"items", "list", "dict", "sequence", "subelements", "together", "nested", "indexed_items", "flattened", "vars"}
)
SAFE_CONNECTIONS = frozenset({"ssh", "smart", "paramiko", "paramiko_ssh"})
CONNECTION_VARIABLE = re.compile(
    r"^ansible_(connection|host|ssh_host|\w*_args|\w*_executable|ssh_\w+|scp_\w+|sftp_\w+|paramiko_\w+|docker_\w+"
    r"|shell_type|remote_tmp|python_interpreter)$"
)
SAFE_INTERPRETER = re.compile(r"^(auto|auto_silent|auto_legacy|auto_legacy_silent|/[\w./-]+)$")
LOCAL_NAMES = re.compile(r"^(localhost|localhost\.localdomain|127(\.\d+){3}|::1|0\.0\.0\.0|local)$", re.IGNORECASE)
FACT_MODULES = frozenset({"set_fact", "add_host"})


def _unqualified(name: str) -> str:
    for prefix in ("ansible.builtin.", "ansible.legacy."):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def safe_lookup(plugin: str | None) -> bool:
    return plugin is not None and _unqualified(plugin) in SAFE_LOOKUPS


def safe_connection(value: Any) -> bool:
    return isinstance(value, str) and not is_template(value) and _unqualified(value.strip()) in SAFE_CONNECTIONS


def _split_host_pattern(pattern: Any) -> list[str]:
    from ansible.inventory.manager import split_host_pattern

    return [term for term in split_host_pattern(pattern) if term]


def foreign_host_terms(pattern: Any, group: str) -> list[str]:
    """The terms of a host pattern that can add a host outside the group."""
    if isinstance(pattern, str) and is_template(pattern) or isinstance(pattern, list) and any(map(is_template, pattern)):
        return [str(pattern)]
    if not isinstance(pattern, (str, list)):
        return [str(pattern)]
    terms = _split_host_pattern(pattern)
    in_group = re.compile(rf"^{re.escape(group)}(\[[^\]]*\])?$")
    positive = [term for term in terms if not term.startswith(("!", "&"))]
    if not positive:
        # Ansible reads a pattern of exclusions alone as 'all' minus them.
        return ["all"]
    return [term for term in positive if not in_group.match(term)]


def names_group_host(value: Any, group: str) -> bool:
    """A delegate_to that can only name a host of the group: inventory_hostname or groups[group][n]."""
    if not isinstance(value, str):
        return False
    tree = parse(value)
    if tree is None or len(tree.body) != 1 or not isinstance(tree.body[0], nodes.Output):
        return False
    parts = [part for part in tree.body[0].nodes if not (isinstance(part, nodes.TemplateData) and not part.data.strip())]
    return len(parts) == 1 and _group_host_expression(parts[0], group)


def _group_host_expression(expression: nodes.Node, group: str) -> bool:
    if isinstance(expression, nodes.Name):
        return expression.name == "inventory_hostname"
    if isinstance(expression, nodes.Filter) and expression.name in {"first", "last"} and not expression.args:
        return _group_members(expression.node, group)
    if isinstance(expression, nodes.Getitem) and isinstance(expression.arg, nodes.Const):
        return isinstance(expression.arg.value, int) and _group_members(expression.node, group)
    return False


def _group_members(expression: nodes.Node, group: str) -> bool:
    """groups['cloud'] or groups.cloud."""
    if isinstance(expression, nodes.Getattr):
        return expression.attr == group and _is_name(expression.node, "groups")
    if isinstance(expression, nodes.Getitem) and isinstance(expression.arg, nodes.Const):
        return expression.arg.value == group and _is_name(expression.node, "groups")
    return False


def _is_name(expression: nodes.Node, name: str) -> bool:
    return isinstance(expression, nodes.Name) and expression.name == name


def _joins_group(args: dict, group: str) -> bool:
    """Whether add_host's groups (string, list or template) may include the group."""
    value = args.get("groups", args.get("group", args.get("groupname")))
    names = value if isinstance(value, list) else str(value or "").split(",")
    return any(is_template(name) or str(name).strip() == group for name in names)


def connection_variable_problem(name: str, value: Any) -> str | None:
    if not isinstance(name, str) or not CONNECTION_VARIABLE.match(name):
        return None
    if name == "ansible_python_interpreter" and isinstance(value, str) and SAFE_INTERPRETER.match(value.strip()):
        return None
    return f"the playbook sets the connection variable {name}, which can make Ansible run on the machine running it"


class LocalExecution(Rule):
    """Every step runs on the VMs of the course's group, never on the machine running Ansible."""

    id = "local-execution"
    tags = ("course", "security")

    def check(self, playbook: Playbook, course: Course) -> Iterator[Finding]:
        for play in playbook.plays:
            yield from self._findings(play, self._play_problems(play, course))
        for block in playbook.blocks:
            yield from self._findings(block, self._block_problems(block, course))
        for task in playbook.tasks:
            yield from self._findings(task, self._task_problems(task, course))

    def _findings(self, node: Node, problems: Iterator[tuple[str, str]]) -> Iterator[Finding]:
        seen = set()
        for message, fix in problems:
            if message not in seen:
                seen.add(message)
                yield self.at(node, message, fix)

    def _play_problems(self, play: Node, course: Course) -> Iterator[tuple[str, str]]:
        if "hosts" in play.data:
            hosts = play.data["hosts"]
            foreign = foreign_host_terms(hosts, course.group)
            if foreign == [str(hosts)]:
                yield f"hosts {hosts!r} may name hosts outside group '{course.group}'", f"set 'hosts: {course.group}'"
            elif foreign:
                reach = ", ".join(repr(term) for term in foreign)
                yield f"hosts {hosts!r} reaches {reach}, outside group '{course.group}'", f"set 'hosts: {course.group}'"
        yield from self._keyword_problems(play, course)
        own = {key: value for key, value in play.data.items() if key not in TASK_SECTIONS}
        yield from self._lookup_problems(own)

    def _block_problems(self, block: Node, course: Course) -> Iterator[tuple[str, str]]:
        yield from self._keyword_problems(block, course)
        if "delegate_to" in block.data:
            yield from self._delegation_problems(block.data["delegate_to"], course)
        own = {key: value for key, value in block.data.items() if key not in BLOCK_SECTIONS}
        yield from self._lookup_problems(own)

    def _task_problems(self, task: Task, course: Course) -> Iterator[tuple[str, str]]:
        if "local_action" in task.data:
            yield "the task uses local_action, which runs it on the machine running Ansible", (
                "run the module on the VM: write it as a normal task without local_action"
            )
        elif task.delegate_to is not None:
            yield from self._delegation_problems(task.delegate_to, course)
        yield from self._keyword_problems(task, course)
        if task.module in FACT_MODULES:
            for name, value in task.args.items():
                if problem := connection_variable_problem(name, value):
                    yield problem, f"remove {name} from the {task.module} task"
        if task.module == "add_host" and _joins_group(task.args, course.group):
            yield (
                f"the task adds a host to group '{course.group}', so later plays may run on a host the inventory"
                " does not list",
                f"remove the add_host task; the inventory lists the VMs of group '{course.group}'",
            )
        for key in task.data:
            if isinstance(key, str) and key.startswith("with_") and not safe_lookup(key[len("with_"):]):
                yield (
                    f"'{key}' runs the {key[len('with_'):]} lookup on the machine running Ansible",
                    "loop with 'loop:' over a list, or run the command on the VM and register its result",
                )
        yield from self._lookup_problems(task.data)

    def _keyword_problems(self, node: Node, course: Course) -> Iterator[tuple[str, str]]:
        if "connection" in node.data and not safe_connection(node.data["connection"]):
            yield (
                f"the {node.kind} uses 'connection: {node.data['connection']}'; only SSH reaches the VMs",
                "remove the 'connection:' keyword so Ansible connects to the VMs over SSH",
            )
        for name, value in node.own_vars.items():
            if problem := connection_variable_problem(name, value):
                yield problem, f"remove {name} from the {node.kind}'s vars; the inventory sets how to reach the VMs"

    def _delegation_problems(self, target: Any, course: Course) -> Iterator[tuple[str, str]]:
        fix = f"remove 'delegate_to' or delegate to a host of group '{course.group}' (e.g. groups['{course.group}'][0])"
        if is_template(target):
            if not names_group_host(target, course.group):
                yield f"the task is delegated to {target!r}, a template that may name any host", fix
        elif not isinstance(target, str) or LOCAL_NAMES.match(target.strip()):
            yield f"the task is delegated to {target!r}, the machine running Ansible", fix

    def _lookup_problems(self, data: dict) -> Iterator[tuple[str, str]]:
        for text, expression in strings_in(data):
            if reaches := internal_reaches(text, expression):
                yield (
                    f"a template reaches Python internals ({', '.join(reaches)}), which can run code on the machine"
                    " running Ansible",
                    "use only variables, their keys and Ansible's filters; no name starting with '_', no mro,"
                    " globals, builtins or subclasses, no key or attribute built from strings",
                )
            for plugin in lookup_calls(text, expression):
                if safe_lookup(plugin):
                    continue
                what = f"the {plugin!r} lookup" if plugin else "a lookup whose plugin is not named by a literal"
                yield (
                    f"{what} runs on the machine running Ansible",
                    "run the command on the VM with ansible.builtin.command and register its result; lookups are"
                    f" limited to {', '.join(sorted(SAFE_LOOKUPS))}",
                )

