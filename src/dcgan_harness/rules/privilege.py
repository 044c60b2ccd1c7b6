"""Root only where it is needed: the become rules.

Whether a task becomes root is read the way Ansible decides it: the
``ansible_become`` variable (task, block or play vars) wins over the
``become`` keyword, which a task inherits from its blocks and its play;
templated values are rendered from the playbook's variables.
"""

from __future__ import annotations

from collections.abc import Iterator

from .base import Course, Rule
from .findings import Finding
from .model import Node, Playbook, Task
from .templates import Unknown, to_bool

MODULES_NEEDING_ROOT = frozenset(
    {"apt", "apt_key", "apt_repository", "package", "service", "systemd", "systemd_service", "sysvinit", "group", "user"}
)
BECOME_VARIABLES = ("ansible_become", "ansible_sudo")
BECOME_USER_VARIABLES = ("ansible_become_user", "ansible_sudo_user")
ROOT = "root"


def becomes(task: Task) -> tuple[bool | None, Node | None]:
    """Whether the task runs as root, and the play, block or task that decides it.

    None when the deciding value cannot be rendered from the playbook alone.
    """
    setting = _deciding_setting(task)
    if setting is None:
        return False, None
    value, owner = setting
    try:
        return to_bool(task.resolver().render(value)), owner
    except Unknown:
        return None, owner


def becomes_user(task: Task) -> tuple[str | None, Node | None]:
    """The user the task becomes (root when none is set), and who sets it; None when it cannot be rendered."""
    setting = None
    for name in BECOME_USER_VARIABLES:
        if (found := task.nearest_variable(name)) is not None:
            setting = found
            break
    setting = setting or task.nearest("become_user")
    if setting is None:
        return ROOT, None
    value, owner = setting
    try:
        rendered = task.resolver().render(value)
    except Unknown:
        return None, owner
    return (str(rendered).strip() or ROOT), owner


def becomes_root(task: Task) -> tuple[bool | None, str]:
    """Whether the task runs as root, and, when it does not or may not, why in a phrase."""
    root, owner = becomes(task)
    if root is None:
        return None, f"may not become root: its become setting at line {owner.line} does not render from the playbook alone"
    if root is False:
        return False, "does not become root"
    user, owner = becomes_user(task)
    if user is None:
        return None, f"may not become root: its become_user at line {owner.line} does not render from the playbook alone"
    if user != ROOT:
        return False, f"becomes {user}, not root (become_user at line {owner.line})"
    return True, ""


def _deciding_setting(task: Task) -> tuple | None:
    for name in BECOME_VARIABLES:
        if (found := task.nearest_variable(name)) is not None:
            return found
    return task.nearest("become")


def _sets_become_fact(task: Task) -> bool:
    if task.module != "set_fact":
        return False
    return any(to_bool(task.args.get(name)) is not False for name in BECOME_VARIABLES if name in task.args)


class BecomeMissing(Rule):
    """apt, service, group and user tasks become root."""

    id = "become-missing"
    tags = ("privilege",)

    def check(self, playbook: Playbook, course: Course) -> Iterator[Finding]:
        for task in playbook.tasks:
            if task.module not in MODULES_NEEDING_ROOT:
                continue
            root, why = becomes_root(task)
            if root is True:
                continue
            yield self.at(
                task,
                f"{task.module} changes the system but the task {why}",
                "add 'become: true' to the task and no become_user (or become_user: root)",
            )


class BecomeUnneeded(Rule):
    """No play, block or task becomes root for modules that do not need it."""

    id = "become-unneeded"
    tags = ("privilege",)

    def check(self, playbook: Playbook, course: Course) -> Iterator[Finding]:
        reported: set[int] = set()
        for task in playbook.tasks:
            if _sets_become_fact(task):
                yield self.at(
                    task,
                    "the task sets ansible_become, so every later task runs as root",
                    "remove the fact and set 'become: true' on the apt, service, group and user tasks",
                )
            if task.module in MODULES_NEEDING_ROOT:
                continue
            root, owner = becomes(task)
            if root is True and id(owner) not in reported:
                reported.add(id(owner))
                yield self._unneeded(owner, task)

    def _unneeded(self, owner: Node, task: Task) -> Finding:
        if owner.kind == "play":
            return self.at(
                owner,
                f"the whole play runs as root, including tasks that do not need it ({task.label})",
                "remove play-level become (keyword or ansible_become) and set 'become: true' on the apt, service,"
                " group and user tasks",
            )
        if owner.kind == "block":
            return self.at(
                owner,
                f"the block becomes root for {task.label}, which does not need it",
                "move 'become: true' from the block onto the apt, service, group and user tasks",
            )
        return self.at(
            owner,
            f"{task.module or 'the task'} does not need root but the task becomes root",
            "remove 'become: true' from the task",
        )
