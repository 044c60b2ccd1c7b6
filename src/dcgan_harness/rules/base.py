"""The shape every rule takes, and what the course expects of a playbook."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

from .findings import ERROR, Finding
from .model import Node, Playbook


@dataclass(frozen=True)
class Course:
    """What the caller expects: the rules take these from here, never from the playbook."""

    # The inventory group holding the VMs; a play may reach no other host.
    group: str = "cloud"
    # Folder, beside the playbook, that output.txt must be fetched into.
    results_dir: str = "resultados"
    output_name: str = "output.txt"


COURSE_SETTINGS = Course()


class Rule:
    """One rule: an id, a severity, tags, a one-line doc and a check."""

    id: ClassVar[str]
    severity: ClassVar[str] = ERROR
    tags: ClassVar[tuple[str, ...]] = ()

    def check(self, playbook: Playbook, course: Course) -> Iterator[Finding]:
        raise NotImplementedError

    @classmethod
    def doc(cls) -> str:
        return (cls.__doc__ or "").strip().splitlines()[0]

    def at(self, node: Node, message: str, fix: str) -> Finding:
        return Finding(self.id, node.line, node.label, message, fix, self.severity)

    def at_play(self, playbook: Playbook, message: str, fix: str) -> Finding:
        """A finding about something the playbook lacks, shown at its first play."""
        label = playbook.plays[0].label if playbook.plays else "playbook"
        return Finding(self.id, playbook.first_line, label, message, fix, self.severity)
