"""Stage 3, verify: what the playbook left on the VM and what it fetched.

testinfra looks at the VM (Docker installed and running, the repository
cloned wherever the student put it, the image present); the fetched
resultados/**/output.txt is parsed against what the grader expects: the
rubric's epochs and world size, and the iterations that the staged images
imply. What to expect comes from the grader's own settings, never from the
files it checks, except the batch size when the rubric leaves it to the
student.

Every command on the VM has a deadline, and all of them together another: a
playbook can leave what hangs whoever reads it (a FIFO where .git/HEAD
should be blocks git forever), and such a check then fails, saying so.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path

from ..output import Expectations, check_complete, parse_output
from .results import ERROR, FAILED, PASSED, CheckResult
from .vmhost import CommandTimedOut, vm_host
from .work import GradingRun, SubmissionWork

OUTPUT_NAME = "output.txt"
# Folders a clone or output.txt cannot be in, or that are too large to search.
PRUNED = ("/proc", "/sys", "/dev", "/run", "/var/lib/docker", "/usr/lib", "/usr/share", "/usr/include", "/boot")
MAX_OUTPUT_BYTES = 8 * 1024 * 1024
COURSE_BATCH_SIZE = 128
# One command on the VM: a find over its disk takes seconds even on a loaded
# machine; a minute means it hangs.
COMMAND_TIMEOUT_S = 60
# Every command of the stage together: a VM whose every command hangs still
# ends its verify stage within this, and the class goes on.
VERIFY_DEADLINE_S = 180
# What a command may print that is kept: output.txt is read whole.
MAX_COMMAND_OUTPUT_BYTES = 2 * MAX_OUTPUT_BYTES


def find_command(name_pattern: str, kind: str) -> str:
    prune = " -o ".join(f"-path {path}" for path in PRUNED)
    return f"find / -xdev \\( {prune} \\) -prune -o -name {shlex.quote(name_pattern)} -type {kind} -print 2>/dev/null"


class VerifyStage:
    name = "verify"

    def run(self, run: GradingRun, work: SubmissionWork) -> None:
        started = time.monotonic()
        host = None
        if work.cloud:
            host = vm_host(work.cloud.vms[0].name, VERIFY_DEADLINE_S, COMMAND_TIMEOUT_S, MAX_COMMAND_OUTPUT_BYTES)
        checks = {
            "install": lambda rule: self.install(host, work, rule),
            "clone": lambda rule: self.clone(host, run, work, rule),
            "build": lambda rule: self.build(host, run, work, rule),
            "run": lambda rule: self.trained(host, run, work, rule),
            "fetch": lambda rule: self.fetch(work, rule),
        }
        for check_id, check in checks.items():
            rule = run.rubric.rule(check_id)
            if rule is None:
                continue
            if host is None and check_id != "fetch":
                work.add(CheckResult(rule.id, rule.name, 0, rule.points, FAILED, [work.run_problem or "no VM to check"]))
                continue
            try:
                work.add(check(rule))
            except CommandTimedOut as error:
                work.add(_failed(rule, work, f"the check timed out: {error}"))
            except Exception as error:  # noqa: BLE001 - one broken check must not hide the others
                work.add(CheckResult(rule.id, rule.name, 0, rule.points, ERROR, [f"the check could not run: {error}"]))
        passed = [c.id for c in work.result.checks if c.id in checks and c.outcome == PASSED]
        work.report(self.name, f"passed: {', '.join(passed) or 'none'}", time.monotonic() - started)

    # --- The assignment's steps ------------------------------------------------

    def install(self, host, work: SubmissionWork, rule) -> CheckResult:
        if not host.exists("docker"):
            return _failed(rule, work, "the docker command is not installed on the VM (apt package docker.io)")
        service = host.service("docker")
        if not service.is_running:
            return _failed(rule, work, "Docker is installed but its service is not running (systemctl start docker)")
        feedback = ["docker is installed and its service is running"]
        if not service.is_enabled:
            feedback.append("note: the docker service is not enabled, so it will not start after a reboot")
        return _passed(rule, feedback)

    def clone(self, host, run: GradingRun, work: SubmissionWork, rule) -> CheckResult:
        listing = host.run(find_command(".git", "d"))
        repositories = [line[: -len("/.git")] for line in listing.stdout.splitlines() if line.endswith("/.git")]
        found = {path: _head_of(host, path) for path in repositories}
        matching = [path for path, head in found.items() if head == run.served.commit]
        if matching:
            return _passed(rule, [f"the DCGAN repository is cloned at {matching[0]} (commit {run.served.commit[:12]})"])
        if not found:
            return _failed(rule, work, "no git clone found on the VM; clone https://github.com/otavioon/Distributed-DCGAN")
        others = ", ".join(f"{path} ({head[:12] or 'no commit'})" for path, head in found.items())
        return _failed(rule, work, f"no clone of the DCGAN repository at commit {run.served.commit[:12]}; found {others}")

    def build(self, host, run: GradingRun, work: SubmissionWork, rule) -> CheckResult:
        if not host.exists("docker"):
            return _failed(rule, work, "no image can exist: docker is not installed")
        listed = host.run(f"docker image ls --format '{{{{.Repository}}}}:{{{{.Tag}}}}' {shlex.quote(run.rubric.image)}")
        tags = [line for line in listed.stdout.split() if line]
        if listed.rc == 0 and tags:
            return _passed(rule, [f"image {', '.join(tags)} exists on the VM"])
        return _failed(rule, work, f"no image named {run.rubric.image} on the VM (docker build -t {run.rubric.image} .)")

    def trained(self, host, run: GradingRun, work: SubmissionWork, rule) -> CheckResult:
        fetched = fetched_outputs(work)
        if fetched:
            where, text = f"resultados/{fetched[0].relative_to(work.results_dir)}", fetched[0].read_text(errors="replace")
        else:
            located = output_on_vm(host)
            if located is None:
                return _failed(rule, work, "no output.txt on the VM or in resultados/: the training did not run")
            where, text = located
        parsed = parse_output(text)
        expected = expectations(run, parsed)
        problems = check_complete(parsed, expected)
        note = [] if where.endswith(OUTPUT_NAME) else [f"the output was written to {where}, not output.txt"]
        if problems:
            return _failed(rule, work, f"{where} is not one complete epoch:", *[f"  {p}" for p in problems[:10]])
        return _passed(rule, note + [f"{where}: {expected.epochs} epoch(s) of {expected.iterations} iterations, finite losses"])

    def fetch(self, work: SubmissionWork, rule) -> CheckResult:
        fetched = fetched_outputs(work)
        dropped = [work.fetch_dropped] if work.fetch_dropped else []
        if fetched:
            return _passed(rule, [f"fetched resultados/{fetched[0].relative_to(work.results_dir)}", *dropped])
        others = [p.relative_to(work.results_dir) for p in work.fetched]
        hint = f"; resultados/ holds {', '.join(map(str, others[:5]))}" if others else ""
        return _failed(rule, work, f"no resultados/**/output.txt was fetched (ansible.builtin.fetch into resultados/){hint}", *dropped)


def expectations(run: GradingRun, parsed) -> Expectations:
    batch = run.rubric.batch_size or _student_batch(parsed) or COURSE_BATCH_SIZE
    return Expectations.from_settings(
        run.staged_images, batch, world_size=run.rubric.world_size, epochs=run.rubric.epochs, ranks=(0,)
    )


def _student_batch(parsed) -> int | None:
    batch = (parsed.args or {}).get("batch_size")
    return batch if isinstance(batch, int) and batch > 0 else None


def fetched_outputs(work: SubmissionWork) -> list[Path]:
    if not work.results_dir.is_dir():
        return []
    return sorted(work.results_dir.rglob(OUTPUT_NAME), key=lambda p: (len(p.parts), str(p)))


def output_on_vm(host) -> tuple[str, str] | None:
    """The training output left on the VM, also under the assignment's typo `output.tx`."""
    listing = host.run(find_command("output.tx*", "f"))
    candidates = sorted(listing.stdout.split(), key=lambda p: (not p.endswith(OUTPUT_NAME), len(p)))
    for path in candidates:
        file = host.file(path)
        if file.size <= MAX_OUTPUT_BYTES:
            return path, file.content_string
    return None


def _head_of(host, path: str) -> str:
    quoted = shlex.quote(path)
    result = host.run(f"git -c safe.directory='*' -C {quoted} rev-parse HEAD 2>/dev/null")
    return result.stdout.strip() if result.rc == 0 else ""


def _passed(rule, feedback: list[str]) -> CheckResult:
    return CheckResult(rule.id, rule.name, rule.points, rule.points, PASSED, feedback)


def _failed(rule, work: SubmissionWork, *feedback: str) -> CheckResult:
    lines = list(feedback)
    if work.run_problem:
        lines.append(work.run_problem)
    return CheckResult(rule.id, rule.name, 0, rule.points, FAILED, lines)
