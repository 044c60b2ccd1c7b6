"""Rules on the shape of the playbook: names, one module per task, one file."""

from __future__ import annotations

from collections.abc import Iterator

from .base import Course, Rule
from .findings import Finding
from .model import Playbook, block_keywords
from .templates import CONDITIONAL_KEYWORDS, oversized

INCLUDE_MODULES = frozenset(
    {"include", "include_tasks", "import_tasks", "include_role", "import_role", "include_vars"}
)


class TaskName(Rule):
    """Every task and block has a name that says what it does."""

    id = "task-name"
    tags = ("readability",)

    def check(self, playbook: Playbook, course: Course) -> Iterator[Finding]:
        for node in [*playbook.blocks, *playbook.tasks]:
            if not node.name.strip():
                yield self.at(node, "the task has no name", "add a 'name:' that says in a sentence what the task does")


class TaskStructure(Rule):
    """A task runs exactly one module that Ansible knows, with its options beneath it."""

    id = "task-structure"
    tags = ("syntax",)

    def check(self, playbook: Playbook, course: Course) -> Iterator[Finding]:
        for task in playbook.tasks:
            if task.problem:
                yield self.at(task, f"Ansible cannot read the task: {task.problem}", _fix_for(task.problem))
            elif task.stray_keys:
                keys = ", ".join(repr(key) for key in task.stray_keys)
                yield self.at(
                    task,
                    f"{keys} sit(s) beside module '{task.action}' but {'is' if len(task.stray_keys) == 1 else 'are'}"
                    " neither a task keyword nor the module",
                    f"indent the module's options under '{task.action}:' or split the task in two",
                )
        for node in playbook.nodes:
            for keyword in CONDITIONAL_KEYWORDS:
                conditions = node.data.get(keyword)
                for condition in conditions if isinstance(conditions, list) else [conditions]:
                    if why := oversized(condition, node.resolver()):
                        yield self.at(
                            node,
                            f"its '{keyword}' builds a value too large to evaluate ({why}), which stalls Ansible",
                            f"write the '{keyword}' condition with small numbers and short strings",
                        )
                        break
        for block in playbook.blocks:
            stray = [str(key) for key in block.data if str(key) not in block_keywords()]
            if stray:
                yield self.at(
                    block,
                    f"the block holds {', '.join(repr(key) for key in stray)}, which a block cannot have",
                    "move the module into a task inside 'block:'",
                )


def _fix_for(problem: str) -> str:
    if problem.startswith("conflicting action statements"):
        return "split the task in two, one module each"
    if problem.startswith("couldn't resolve module/action"):
        return "check the module's spelling (e.g. ansible.builtin.apt) or indent the option under its module"
    if problem.startswith("no module/action detected"):
        return "give the task a module, e.g. ansible.builtin.command"
    return "write the task as 'module_name:' with its options indented beneath it"


class SelfContained(Rule):
    """Everything is graded from configure.yaml: no roles, imports, includes or vars files."""

    id = "self-contained"
    tags = ("course",)

    def check(self, playbook: Playbook, course: Course) -> Iterator[Finding]:
        for play in playbook.plays:
            if "import_playbook" in play.data or "ansible.builtin.import_playbook" in play.data:
                yield self.at(play, "the playbook imports another playbook", "put every task in configure.yaml itself")
            for key in ("roles", "vars_files"):
                if play.data.get(key):
                    yield self.at(
                        play,
                        f"the play uses '{key}', which is not graded with configure.yaml",
                        f"move what '{key}' brings into the play's tasks and vars block",
                    )
        for task in playbook.tasks:
            if task.module in INCLUDE_MODULES:
                yield self.at(
                    task,
                    f"the task uses {task.module}, which is not graded with configure.yaml",
                    "write the included tasks or vars into configure.yaml itself",
                )
