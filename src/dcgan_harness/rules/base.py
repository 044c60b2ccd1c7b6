"""The shape every rule takes, and what the course expects of a playbook."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

from .findings import ADVISORY, ERROR, Finding
from .model import Node, Playbook


@dataclass(frozen=True)
class Course:
    """What the caller expects: the rules take these from here, never from the playbook."""

    # The inventory group holding the VMs; a play may reach no other host.
    group: str = "cloud"
    # Folder, beside the playbook, that output.txt must be fetched into.
    results_dir: str = "resultados"
    output_name: str = "output.txt"
    # The repository to clone, as host/owner/name; any URL GitHub sends there counts.
    repository: str = "github.com/otavioon/Distributed-DCGAN"
    # A package that installs the Docker engine: Ubuntu's, or Docker's own repository's.
    docker_packages: tuple[str, ...] = ("docker.io", "docker-ce")
    # The training the course asks for: the script, its dataset, the test split, the epochs.
    script: str = "dist_dcgan.py"
    dataset: str = "mnist"
    epochs: int = 1


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

    def advise(self, node: Node, message: str, fix: str) -> Finding:
        """What the file alone cannot settle, said as advice: never a pass, never an error."""
        return Finding(self.id, node.line, node.label, message, fix, ADVISORY)

    def judge_step(self, playbook: Playbook, verdicts: list, missing: str, fix: str) -> Iterator[Finding]:
        """Findings for a required step from (task, Verdict) pairs of the tasks that may do it.

        One task that does it is enough; otherwise a task that may do it is
        advice, a task that does not is an error naming why, and no task at
        all is an error at the play.
        """
        if any(verdict.done for _, verdict in verdicts):
            return
        unsure = [(task, verdict) for task, verdict in verdicts if verdict.done is None]
        if unsure:
            task, verdict = unsure[0]
            yield self.advise(task, f"cannot tell from the playbook alone whether this task {verdict.why}", fix)
        elif verdicts:
            task, verdict = verdicts[0]
            yield self.at(task, f"{missing}: this task {verdict.why}", fix)
        else:
            yield self.at_play(playbook, missing, fix)

    def at_play(self, playbook: Playbook, message: str, fix: str) -> Finding:
        """A finding about something the playbook lacks, shown at its first play."""
        label = playbook.plays[0].label if playbook.plays else "playbook"
        return Finding(self.id, playbook.first_line, label, message, fix, self.severity)
