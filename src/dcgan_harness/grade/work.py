"""The state a grading run shares across submissions, and what one submission's
stages hand each other."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import docker

from ..localcloud import CloudImages, ServedApp
from ..localcloud.controller import SandboxResult
from .results import CheckResult, StageReport, SubmissionResult
from .rubric import Rubric
from .staging import StagedApp
from .submission import Submission

if TYPE_CHECKING:
    from ..targets import Target

FAST = "fast"
FULL = "full"
MODES = (FAST, FULL)
# Images the grader stages per mode: 2 iterations at batch 128, or the course's 79.
STAGED_IMAGES = {FAST: 256, FULL: 10_000}
DEFAULT_TIMEOUT_S = {FAST: 900, FULL: 3600}
# Where submissions run: LXD VMs whose root is an unprivileged uid here, or
# the Docker VMs, which are root on this machine (trusted classes only).
UNPRIVILEGED = "unprivileged"
PRIVILEGED = "docker"
BACKENDS = (UNPRIVILEGED, PRIVILEGED)


@dataclass
class GradingRun:
    """Built once per `grade`: the engine, images, the served app, the settings."""

    client: docker.DockerClient
    images: CloudImages
    controller_image: str
    served: ServedApp
    grading_id: str
    mode: str
    timeout: float
    rubric: Rubric
    out_dir: Path
    # Where each submission's own copy of the app and its MNIST images come from.
    app_dir: Path | None = None
    mnist_dir: Path | None = None
    # The served Dockerfile built on this machine, for the grader's own runs; None: the runtime image.
    reference_image: str | None = None
    # The manifest digest of the runtime as published to the mirror, checked before each submission.
    runtime_digest: str | None = None
    # Where submissions run: unprivileged (LXD) VMs, or the Docker VMs, root on this machine.
    backend: str = UNPRIVILEGED
    stop: threading.Event = field(default_factory=threading.Event)
    # Run ids of the submissions' VMs, for the cleanup after Ctrl-C.
    run_ids: set[str] = field(default_factory=set)

    @property
    def staged_images(self) -> int:
        return STAGED_IMAGES[self.mode]


@dataclass
class SubmissionWork:
    """One submission on its way through the stages."""

    submission: Submission
    index: int
    total: int
    folder: Path
    result: SubmissionResult
    run_id: str = ""
    playbook_path: Path | None = None
    # This submission's app and data, served for its VM alone (staging.py).
    staged: StagedApp | None = None
    # Where the playbook ran; the verifier reads its VM from outside.
    target: Target | None = None
    sandbox: SandboxResult | None = None
    # Why the playbook did not run, when it did not.
    run_problem: str = ""
    fetched: list[Path] = field(default_factory=list)
    # What of resultados/ was not copied out, when something was not (a line of feedback).
    fetch_dropped: str = ""

    @property
    def name(self) -> str:
        return self.submission.name

    def served(self, run: GradingRun) -> ServedApp:
        """What this submission's VM clones: its own copy when staged, else the class's."""
        return self.staged.served if self.staged is not None else run.served

    @property
    def log_path(self) -> Path:
        return self.folder / "log.txt"

    @property
    def results_dir(self) -> Path:
        return self.folder / "resultados"

    def add(self, check: CheckResult | None) -> None:
        if check is not None:
            self.result.checks.append(check)

    def report(self, stage: str, summary: str, seconds: float) -> StageReport:
        entry = StageReport(stage, summary, round(seconds, 1))
        self.result.stages.append(entry)
        return entry
