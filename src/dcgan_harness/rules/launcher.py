"""Advice on the training command that the course's handout gives."""

from __future__ import annotations

from collections.abc import Iterator

from .base import Course, Rule
from .commands import mentions
from .findings import ADVISORY, Finding
from .model import Playbook
from .templates import Unknown

LAUNCHER = "torch.distributed.launch"


class CourseLauncher(Rule):
    """The training is started with torch.distributed.launch, which torch 2.x breaks."""

    id = "course-launcher"
    severity = ADVISORY
    tags = ("course", "portability")

    def check(self, playbook: Playbook, course: Course) -> Iterator[Finding]:
        for task in playbook.tasks:
            try:
                # The command may be kept in a play variable.
                rendered = task.resolver(lenient=True).render(task.args)
            except Unknown:
                rendered = None
            if mentions(task.args, LAUNCHER) or mentions(rendered, LAUNCHER):
                yield self.at(
                    task,
                    f"the command uses {LAUNCHER}; since torch 2.0 that launcher passes --local-rank, which"
                    " upstream's dist_dcgan.py rejects",
                    "call the script directly with the environment-variable rendezvous (RANK, WORLD_SIZE,"
                    " MASTER_ADDR, MASTER_PORT set with --env), which works on torch 1.x and 2.x",
                )
