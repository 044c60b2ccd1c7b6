"""Long steps survive a dropped SSH session: async with a real wait."""

from __future__ import annotations

import re
from collections.abc import Iterator

from . import commands
from .base import Course, Rule
from .findings import Finding
from .model import Playbook, Task
from .required import builds_from_source
from .templates import Unknown, to_bool

CONTAINER_MODULES = frozenset({"docker_container"})
COMPOSE_MODULES = frozenset({"docker_compose", "docker_compose_v2"})
WAIT_MODULE = "async_status"


def is_image_build(task: Task, playbook: Playbook) -> bool:
    if builds_from_source(task, playbook) or task.module == "docker_image_build":
        return True
    return commands.builds_image(commands.task_command(task))


def is_container_run(task: Task) -> bool:
    if task.module in CONTAINER_MODULES:
        return str(task.args.get("state", "started")) == "started"
    if task.module in COMPOSE_MODULES:
        return str(task.args.get("state", "present")) == "present"
    return commands.runs_container(commands.task_command(task))


def runs_detached(task: Task) -> bool:
    if task.module in COMPOSE_MODULES:
        # These modules start the services in the background, like `compose up --detach`.
        return True
    if task.module in CONTAINER_MODULES:
        try:
            return to_bool(task.resolver().render(task.args.get("detach", True))) is not False
        except Unknown:
            return False
    command = commands.task_command(task)
    return commands.runs_detached(command) and not commands.waits_for_container(command)


def waits(task: Task) -> bool:
    """A task that blocks until a detached container has finished."""
    if task.module == "docker_container_info":
        return "until" in task.data
    return commands.waits_for_container(commands.task_command(task))


def seconds(task: Task, keyword: str) -> int | None:
    """The keyword's value as a whole number, rendered from the playbook's variables; None if it is not one."""
    try:
        value = task.resolver().render(task.data[keyword])
    except Unknown:
        return None
    if isinstance(value, bool):
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def waits_for(waiter: Task, register: str, playbook: Playbook) -> bool:
    """An async_status task that retries until the registered job has finished."""
    if waiter.module != WAIT_MODULE or "until" not in waiter.data or not playbook.runs(waiter):
        return False
    job = str(waiter.args.get("jid", ""))
    return re.search(rf"\b{re.escape(register)}\b", job) is not None


class AsyncPoll(Rule):
    """The image build and the training run use async, and Ansible waits for them."""

    id = "async-poll"
    tags = ("course", "reliability")

    def check(self, playbook: Playbook, course: Course) -> Iterator[Finding]:
        for index, task in enumerate(playbook.tasks):
            if is_image_build(task, playbook):
                what = "builds the image"
            elif is_container_run(task):
                what = "runs the DCGAN"
            else:
                continue
            later = playbook.tasks[index + 1:]
            problem = self._problem(task, later, playbook)
            if problem is None and what == "runs the DCGAN" and runs_detached(task) and not any(map(waits, later)):
                problem = (
                    "the container runs detached, so the play moves on (and fetches output.txt) before it ends",
                    "run it attached (docker run without -d, docker_container with 'detach: false') or wait for it"
                    " with 'docker wait <container>'",
                )
            if problem:
                message, fix = problem
                yield self.at(task, f"the task {what} for many minutes, but {message}", fix)

    @staticmethod
    def _problem(task: Task, later: list[Task], playbook: Playbook) -> tuple[str, str] | None:
        missing = [key for key in ("async", "poll") if key not in task.data]
        if missing:
            return (
                f"it has no {' and no '.join(missing)}, so a dropped SSH session kills it",
                "add 'async: <max seconds>' and 'poll: <seconds between checks>' to the task",
            )
        limit = seconds(task, "async")
        if limit is None or limit <= 0:
            return (
                f"async is {task.data['async']!r}, which does not render to a positive number of seconds",
                "set 'async:' to the most seconds the step may take, e.g. 3600",
            )
        interval = seconds(task, "poll")
        if interval is None or interval < 0:
            return (
                f"poll is {task.data['poll']!r}, which does not render to a number of seconds",
                "set 'poll:' to the seconds between checks, e.g. 15",
            )
        if interval == 0 and not AsyncPoll._waited_for(task, later, playbook):
            return (
                "poll is 0 (fire and forget) and no async_status task waits for it, so the play moves on"
                " before it ends",
                "set 'poll:' above 0, or register the job and wait for it with ansible.builtin.async_status"
                " and 'until: job.finished'",
            )
        return None

    @staticmethod
    def _waited_for(task: Task, later: list[Task], playbook: Playbook) -> bool:
        register = task.data.get("register")
        if not isinstance(register, str) or not register:
            return False
        return any(waits_for(waiter, register, playbook) for waiter in later)
