"""Stage 3, verify: evidence of each step, read from outside the VM.

A student is root on the VM and may replace its programs, so nothing here
asks the VM: its files, its Docker storage and its processes are read on the
grading machine (outside.py), and what each step must show comes from the
grader's own staging, never from what the VM says:

- install: dpkg records docker.io as installed, and a running process of
  the VM is the package's dockerd (its md5 is the one in the .deb that the
  grader's apt cache fetched from Debian, not the VM's own md5sums);
- clone: a folder whose HEAD is the commit served to this submission, whose
  object store (copied out, read by the grader's git with its own config)
  holds that commit and everything it reaches, and whose work tree holds the
  commit's files unchanged;
- build: the VM's Docker storage tags an image `dist_dcgan` whose
  configuration matches its id, whose history holds every RUN step of the
  served Dockerfile, and whose layers start with its base image's, where the
  grading machine has that base;
- run: output.txt is one complete epoch against the grader's expectations,
  and the losses it prints for the first iterations are those of the
  grader's own run of the app on this submission's own random choice of
  MNIST images (reference.py), which nobody knew before its VM started;
- fetch: resultados/**/output.txt came back from the play.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from ..localcloud import RUN_LABEL
from ..localcloud.aptcache import APT_CACHE_VOLUME
from ..localcloud.images import project_labels
from ..output import Expectations, check_complete, parse_output
from .outside import (
    MAX_CLONES_CHECKED,
    EvidenceError,
    SafeTree,
    VmFromOutside,
    installed_version,
    md5_of_program,
    package_md5sums,
)
from .reference import (
    REFERENCE_ITERATIONS,
    ReferenceError,
    mismatches,
    printed_losses,
    reference_arguments,
    run_reference,
)
from .results import ERROR, FAILED, PASSED, CheckResult
from .work import GradingRun, SubmissionWork

OUTPUT_NAME = "output.txt"
# The assignment's own typo, which some students copy.
OUTPUT_NAMES = (OUTPUT_NAME, "output.tx")
MAX_OUTPUT_BYTES = 8 * 1024 * 1024
COURSE_BATCH_SIZE = 128
ENGINE_PACKAGES = ("docker.io", "docker-ce")
ENGINE_PROGRAMS = ("/usr/sbin/dockerd", "/usr/bin/dockerd")
SERVICE_LINK = "etc/systemd/system/multi-user.target.wants"
# Processes named dockerd whose program is hashed: one engine runs per VM.
MAX_ENGINES_HASHED = 5


class VerifyStage:
    name = "verify"

    def run(self, run: GradingRun, work: SubmissionWork) -> None:
        started = time.monotonic()
        vm, why = None, work.run_problem or "no VM to check"
        if work.target and work.target.machines:
            machine = work.target.machines[0]
            # Frozen, the VM can change nothing while it is read: no mount
            # appears, no file is swapped between two reads.
            machine.freeze()
            try:
                vm = VmFromOutside.of(machine)
            except EvidenceError as error:
                why = f"the VM cannot be read from outside: {error}"
        checks = {
            "install": lambda rule: self.install(vm, run, work, rule),
            "clone": lambda rule: self.clone(vm, run, work, rule),
            "build": lambda rule: self.build(vm, run, work, rule),
            "run": lambda rule: self.trained(vm, run, work, rule),
            "fetch": lambda rule: self.fetch(work, rule),
        }
        for check_id, check in checks.items():
            rule = run.rubric.rule(check_id)
            if rule is None:
                continue
            if vm is None and check_id != "fetch":
                work.add(CheckResult(rule.id, rule.name, 0, rule.points, FAILED, [why]))
                continue
            try:
                work.add(check(rule))
            except Exception as error:  # noqa: BLE001 - one broken check must not hide the others
                work.add(CheckResult(rule.id, rule.name, 0, rule.points, ERROR, [f"the check could not run: {error}"]))
        if vm is not None:
            vm.close()
        passed = [c.id for c in work.result.checks if c.id in checks and c.outcome == PASSED]
        work.report(self.name, f"passed: {', '.join(passed) or 'none'}", time.monotonic() - started)

    # --- The assignment's steps ------------------------------------------------

    def install(self, vm: VmFromOutside, run: GradingRun, work: SubmissionWork, rule) -> CheckResult:
        found = [(package, installed_version(vm, package)) for package in ENGINE_PACKAGES]
        package, version = next(((p, v) for p, v in found if v), (None, None))
        if version is None:
            return _failed(rule, work, "dpkg records no Docker engine installed on the VM (apt package docker.io)")
        cache = SafeTree(run.client.volumes.get(APT_CACHE_VOLUME).attrs["Mountpoint"])
        try:
            sums = package_md5sums(cache, package, version)
        finally:
            cache.close()
        genuine = {sums[program] for program in ENGINE_PROGRAMS if program in sums}
        if not genuine:
            return _failed(
                rule, work, f"{package} {version} is recorded as installed, but it is not a package the VMs' apt"
                " source served (install docker.io with ansible.builtin.apt)",
            )
        named = [pid for pid in vm.pids if vm.program_name(pid) == "dockerd"][:MAX_ENGINES_HASHED]
        if not any(md5_of_program(pid) in genuine for pid in named):
            return _failed(
                rule, work, f"{package} {version} is installed, but no process of the VM runs its dockerd"
                " (systemctl start docker)",
            )
        feedback = [f"{package} {version} is installed and its dockerd runs (checked against Debian's package)"]
        wants = {name for name, _ in vm.root.entries(SERVICE_LINK)}
        if "docker.service" not in wants:
            feedback.append("note: the docker service is not enabled, so it will not start after a reboot")
        return _passed(rule, feedback)

    def clone(self, vm: VmFromOutside, run: GradingRun, work: SubmissionWork, rule) -> CheckResult:
        commit = work.served(run).commit
        found = {path: vm.head_of(path) for path in vm.clones()}
        matching = [path for path, head in found.items() if head == commit]
        if not found:
            return _failed(rule, work, "no git clone found on the VM; clone https://github.com/otavioon/Distributed-DCGAN")
        if not matching:
            others = ", ".join(f"/{path} ({head[:12] or 'no commit'})" for path, head in found.items())
            return _failed(rule, work, f"no clone of the DCGAN repository at commit {commit[:12]}; found {others}")
        problems = []
        for path in matching[:MAX_CLONES_CHECKED]:
            holds, why = vm.holds_commit(path, commit)
            if not holds:
                problems.append(f"/{path} names commit {commit[:12]} but {why}")
                continue
            feedback = [f"the DCGAN repository is cloned at /{path} (commit {commit[:12]}, its objects checked)"]
            differing = vm.tree_differences(path, work.staged.tree) if work.staged is not None else []
            if differing:
                shown = ", ".join(differing[:5]) + (f" and {len(differing) - 5} more" if len(differing) > 5 else "")
                feedback.append(f"note: the playbook changed files of the clone: {shown}")
            return _passed(rule, feedback)
        return _failed(rule, work, *problems)

    def build(self, vm: VmFromOutside, run: GradingRun, work: SubmissionWork, rule) -> CheckResult:
        image = run.rubric.image if ":" in run.rubric.image else f"{run.rubric.image}:latest"
        found = vm.image_config(image)
        if found is None:
            return _failed(rule, work, f"no image {image} in the VM's Docker storage (docker build -t {run.rubric.image} .)")
        image_id, config = found
        steps, base = dockerfile_steps(work.staged.app_dir / "Dockerfile") if work.staged is not None else ([], None)
        history = [" ".join(str(entry.get("created_by", "")).split()) for entry in config.get("history") or []]
        missing = [step for step in steps if not any(step in entry for entry in history)]
        if missing:
            return _failed(
                rule, work, f"image {image} was not built from the clone's Dockerfile: its history lacks the step"
                f" RUN {missing[0][:120]}",
            )
        layers = (config.get("rootfs") or {}).get("diff_ids") or []
        present, why = vm.layers_present(layers)
        if not present:
            return _failed(rule, work, f"image {image} was not built on the VM: {why}")
        base_layers = _layers_of(run.client, base)
        if base_layers is not None and layers[: len(base_layers)] != base_layers:
            return _failed(rule, work, f"image {image} is not built on the Dockerfile's base image {base}")
        checked = f"{len(steps)} RUN step(s)" + (f" on {base}" if base_layers is not None else "")
        return _passed(rule, [f"image {image} ({image_id[7:19]}) was built from the clone's Dockerfile ({checked})"])

    def trained(self, vm: VmFromOutside, run: GradingRun, work: SubmissionWork, rule) -> CheckResult:
        fetched = fetched_outputs(work)
        if fetched:
            with open(fetched[0], "rb") as handle:
                text = handle.read(MAX_OUTPUT_BYTES).decode("utf-8", errors="replace")
            where = f"resultados/{fetched[0].relative_to(work.results_dir)}"
        else:
            located = output_on_vm(vm)
            if located is None:
                return _failed(rule, work, "no output.txt on the VM or in resultados/: the training did not run")
            where, text = located
        parsed = parse_output(text)
        expected = expectations(run, parsed)
        problems = check_complete(parsed, expected)
        note = [] if where.endswith(OUTPUT_NAME) else [f"the output was written to {where}, not output.txt"]
        if problems:
            return _failed(rule, work, f"{where} is not one complete epoch:", *[f"  {p}" for p in problems[:10]])
        summary = f"{where}: {expected.epochs} epoch(s) of {expected.iterations} iterations, finite losses"
        if work.staged is None:
            return _passed(rule, note + [summary])
        try:
            arguments = reference_arguments(parsed.args or {})
        except ReferenceError as error:
            return _failed(rule, work, f"{where} cannot be checked against the grader's own run: {error}")
        count = min(REFERENCE_ITERATIONS, expected.iterations)
        try:
            reference = run_reference(
                run.client, run.reference_image or run.images.runtime, work.staged.app_dir, arguments, count,
                name=f"dcgan-reference-{work.run_id}", labels=project_labels("reference", **{RUN_LABEL: work.run_id}),
            )
        except ReferenceError as error:
            return CheckResult(rule.id, rule.name, 0, rule.points, ERROR, [f"the grader's own run failed: {error}"])
        wrong = mismatches(printed_losses(parsed.iterations, count), reference)
        if wrong:
            return _failed(
                rule, work, f"{where} does not hold what the DCGAN prints on this submission's data"
                f" ({work.staged.images} MNIST test images chosen for it):", *[f"  {line}" for line in wrong],
            )
        return _passed(rule, note + [summary, f"the losses of its first {count} iteration(s) are those of the grader's"
                                     f" own run on this submission's own {work.staged.images} images"])

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


def output_on_vm(vm: VmFromOutside) -> tuple[str, str] | None:
    """The training output left on the VM, also under the assignment's typo `output.tx`."""
    candidates = sorted(
        vm.root.files_named(OUTPUT_NAMES), key=lambda p: (not p.endswith(OUTPUT_NAME), len(p), p)
    )
    for path in candidates:
        data = vm.root.read(path, MAX_OUTPUT_BYTES)
        if data is not None:
            return f"/{path}", data.decode("utf-8", errors="replace")
    return None


def dockerfile_steps(path: Path) -> tuple[list[str], str | None]:
    """The RUN commands of a Dockerfile (whitespace folded, continuations joined) and its first FROM image."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return [], None
    logical = re.sub(r"\\\n", " ", text)
    steps, base = [], None
    for line in logical.splitlines():
        words = line.strip().split(None, 1)
        if not words or words[0].startswith("#"):
            continue
        if words[0].upper() == "FROM" and base is None and len(words) > 1:
            base = words[1].split()[0]
        elif words[0].upper() == "RUN" and len(words) > 1:
            steps.append(" ".join(words[1].split()))
    return steps, base


def _layers_of(client, image: str | None) -> list[str] | None:
    """The layers of a base image the grading machine has; None when it has not got it."""
    if not image:
        return None
    try:
        return client.images.get(image).attrs["RootFS"]["Layers"]
    except Exception:  # noqa: BLE001 - a base from a registry the grader cannot reach is not compared
        return None


def _passed(rule, feedback: list[str]) -> CheckResult:
    return CheckResult(rule.id, rule.name, rule.points, rule.points, PASSED, feedback)


def _failed(rule, work: SubmissionWork, *feedback: str) -> CheckResult:
    lines = list(feedback)
    if work.run_problem:
        lines.append(work.run_problem)
    return CheckResult(rule.id, rule.name, 0, rule.points, FAILED, lines)
