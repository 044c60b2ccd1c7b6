"""What a task's arguments come to on a plain run, from the playbook alone.

Values are rendered from the playbook's own variables, once per loop item
when the task loops, with Ansible's magic variables as placeholders. A value
that depends on facts or registered results is ``Unknown``; the rules then
say it cannot be told, never that it passes.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .model import Playbook, Task
from .templates import (
    JINJA_EXPRESSION,
    JINJA_STATEMENT,
    Placeholder,
    Unknown,
    is_template,
)

# Magic variables a path may use; placeholders, not guesses.
HOST_PLACEHOLDER = "<inventory_hostname>"
LOOP_KEYS = ("loop", "with_items", "with_list")
# Loops longer than this are not unrolled: no course playbook needs it.
MAX_LOOP_ITEMS = 200
# Rendered values are already capped (templates.MAX_RESULT); so is what is parsed back.
MAX_LITERAL = 10_000


@dataclass(frozen=True)
class Verdict:
    """Whether a task does a step: True, False, or None when the file alone cannot tell; and why."""

    done: bool | None
    why: str = ""


DONE = Verdict(True)


def magic_variables(playbook: Playbook) -> dict:
    return {
        "playbook_dir": playbook.directory,
        "inventory_hostname": HOST_PLACEHOLDER,
        "inventory_hostname_short": HOST_PLACEHOLDER,
    }


def render(task: Task, value: Any, playbook: Playbook, lenient: bool = False, extra: dict | None = None) -> Any:
    rendered = task.resolver(lenient=lenient, extra={**magic_variables(playbook), **(extra or {})}).render(value)
    return native(rendered) if is_template(value) else rendered


def native(rendered: Any) -> Any:
    """A rendered text that spells a list or mapping becomes one, as Ansible turns '{{ packages }}' back into a list."""
    if isinstance(rendered, str) and rendered.strip()[:1] in {"[", "{"} and len(rendered) <= MAX_LITERAL:
        try:
            return ast.literal_eval(rendered.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return rendered
    return rendered


def loop_items(task: Task, playbook: Playbook) -> list | None:
    """The items a looping task runs over; None when it does not loop. Raises Unknown."""
    key = next((key for key in LOOP_KEYS if key in task.data), None)
    if key is None:
        return None
    items = render(task, task.data[key], playbook)
    if isinstance(items, str):
        raise Unknown(f"{key} renders to text, not a list")
    if not isinstance(items, list):
        raise Unknown(f"{key} is not a list")
    if key == "with_items":
        # with_items flattens one level, as Ansible does.
        items = [inner for item in items for inner in (item if isinstance(item, list) else [item])]
    if len(items) > MAX_LOOP_ITEMS:
        raise Unknown(f"{key} has more than {MAX_LOOP_ITEMS} items")
    return items


def loop_variable(task: Task) -> str:
    control = task.data.get("loop_control")
    if isinstance(control, dict) and isinstance(control.get("loop_var"), str):
        return control["loop_var"]
    return "item"


def per_item(task: Task, value: Any, playbook: Playbook, lenient: bool = False) -> Iterator[Any]:
    """The value as each loop item renders it (once when the task does not loop). Raises Unknown."""
    items = loop_items(task, playbook)
    if items is None:
        yield render(task, value, playbook, lenient)
        return
    name = loop_variable(task)
    for item in items:
        yield render(task, value, playbook, lenient, extra={name: item})


def render_pieces(task: Task, text: str, playbook: Playbook) -> str:
    """A command line with each ``{{ expression }}`` rendered on its own and statements dropped.

    A command built with ``{% for %}`` cannot be rendered whole here; its
    expressions that need only the playbook's variables still can, and any
    other becomes ``{?}``.
    """
    resolver = task.resolver(lenient=True, extra=magic_variables(playbook))

    def one(match: re.Match) -> str:
        try:
            rendered = resolver.render(match.group(0))
        except Unknown:
            return "{?}"
        return str(rendered)

    return JINJA_EXPRESSION.sub(one, JINJA_STATEMENT.sub(" ", text))


def known(value: Any) -> bool:
    """A rendered value that holds no placeholder of an unknown variable."""
    if isinstance(value, Placeholder):
        return False
    if isinstance(value, str):
        return "{?}" not in value and not is_template(value)
    if isinstance(value, list):
        return all(known(item) for item in value)
    if isinstance(value, dict):
        return all(known(item) for item in value.values())
    return True
