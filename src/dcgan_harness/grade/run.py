"""Stage 2, run: the student's playbook against a fresh VM, from a sandboxed controller.

The VM is a local-cloud VM shaped like the course's (group `cloud`, host
`compute01`, user `ubuntu`, a key). Its git redirects upstream's URL to the
served stand-in, so a playbook that clones github.com/otavioon/Distributed-DCGAN
works offline unchanged. The controller container reaches the VM over an
internal network that holds only the two of them.
"""

from __future__ import annotations

import json
import re
import time

from ..localcloud import RUN_LABEL, LocalCloudError
from ..localcloud.controller import (
    address_on,
    collect_results,
    create_sandbox_network,
    remove_network,
    run_sandboxed,
)
from ..localcloud.engine import progress, remove_container
from ..localcloud.images import (
    REGISTRY_PORT,
    ensure_mirror,
    runtime_digest,
)
from ..targets import Endpoint, Machine, Target
from ..targets.docker_vms import DockerVms
from ..targets.lxd import LxdVms, bridge_of, local_services
from .staging import stage_submission_app
from .work import UNPRIVILEGED, GradingRun, SubmissionWork

UPSTREAM_PREFIXES = (
    "https://github.com/otavioon/",
    "http://github.com/otavioon/",
    "https://www.github.com/otavioon/",
    "git://github.com/otavioon/",
    "git@github.com:otavioon/",
    "ssh://git@github.com/otavioon/",
)
KEY_NAME = "key.pem"
TASK_HEADER = re.compile(r"^TASK \[(?P<name>.*)\] \**$")
FAILED_LINE = re.compile(r"^(fatal|failed): \[[^\]]+\]: (FAILED|UNREACHABLE)! => (?P<detail>.*)$")
# A result too long for one line of the log is cut (logcap), so not JSON any
# more; its start still holds these, as Ansible sorts the keys.
MSG_FIELD = re.compile(r'"msg": ("(?:[^"\\]|\\.)*")')
RC_FIELD = re.compile(r'"rc": (-?\d+)')


def course_inventory(vm_address: str) -> bytes:
    """The course's inventory shape, pointing at the VM's address on the sandbox network."""
    return (
        "cloud:\n"
        "  hosts:\n"
        "    compute01:\n"
        f"      ansible_host: {vm_address}\n"
        "      ansible_user: ubuntu\n"
        f"      ansible_ssh_private_key_file: {KEY_NAME}\n"
    ).encode()


def upstream_redirect(served_url: str) -> str:
    """System git config that sends every spelling of upstream's URL to the served copy.

    The served repository is named like upstream's, so the rewritten URL
    names it whether or not the student wrote the .git suffix (git daemon
    tries both).
    """
    base = served_url.rsplit("/", 1)[0] + "/"
    lines = [f'[url "{base}"]'] + [f"\tinsteadOf = {prefix}" for prefix in UPSTREAM_PREFIXES]
    return "\n".join(lines) + "\n"


def redirect_upstream_on(machine: Machine, served_url: str) -> None:
    code, output = machine.exec(
        ["sh", "-c", 'printf "%s" "$GITCONFIG" > /etc/gitconfig && chmod 644 /etc/gitconfig'],
        {"GITCONFIG": upstream_redirect(served_url)},
    )
    if code != 0:
        raise LocalCloudError(f"writing /etc/gitconfig on {machine.name} failed: {output[:160]}")


def start_docker_vm(run: GradingRun, work: SubmissionWork, network: str) -> tuple[Target, Endpoint]:
    """A Docker-container VM (root on this machine: trusted runs only), joined to the sandbox network."""
    target = DockerVms(1, work.run_id, client=run.client, images=run.images)
    work.target = target.up()
    vm = target.machines[0]
    redirect_upstream_on(vm, work.served(run).url)
    run.client.networks.get(network).connect(vm.name)
    return target, Endpoint(address_on(run.client.containers.get(vm.name), network), 22)


def start_unprivileged_vm(run: GradingRun, work: SubmissionWork, network: str) -> tuple[Target, Endpoint]:
    """An LXD VM with its own user namespace, on the sandbox network, the services on its loopback."""
    services, vm_url = local_services(run.client, run.images, work.served(run).url)
    target = LxdVms(
        1, work.run_id, docker_client=run.client, vm_image=run.images.vm, services=services,
        mirror_port=REGISTRY_PORT, network=bridge_of(run.client, network),
    )  # fmt: skip
    work.target = target.up()
    vm = target.machines[0]
    redirect_upstream_on(vm, vm_url)
    return target, Endpoint(vm.address, 22)


class RunStage:
    name = "run"

    def run(self, run: GradingRun, work: SubmissionWork) -> None:
        started = time.monotonic()
        if work.submission.playbook is None:
            work.run_problem = f"the playbook did not run: {work.submission.problem}"
            work.report(self.name, "skipped: no configure.yaml", time.monotonic() - started)
            return
        check_mirror(run)
        if run.app_dir is not None:
            work.staged = stage_submission_app(
                run.client, run.app_dir, run.mnist_dir, run.staged_images, run.grading_id, work.run_id
            )
        network = f"dcgan-sandbox-{work.run_id}"
        controller = f"dcgan-controller-{work.run_id}"
        try:
            create_sandbox_network(run.client, network, {RUN_LABEL: work.run_id})
            start = start_unprivileged_vm if run.backend == UNPRIVILEGED else start_docker_vm
            _, endpoint = start(run, work, network)
            # Ctrl-C may have come while the VM booted: its cleanup has run already.
            if run.stop.is_set():
                raise KeyboardInterrupt
            work.sandbox = run_sandboxed(
                run.client,
                run.controller_image,
                controller,
                network=network,
                files={
                    "configure.yaml": work.submission.playbook,
                    "inventory.yaml": course_inventory(endpoint.host),
                    KEY_NAME: work.target.key.read_bytes(),
                },
                command=["ansible-playbook", "-i", "inventory.yaml", "configure.yaml"],
                timeout=run.timeout,
                log_path=work.log_path,
                labels={RUN_LABEL: work.run_id},
            )
            collected = collect_results(controller, run.client, work.results_dir)
            work.fetched, work.fetch_dropped = collected.files, collected.dropped
        finally:
            remove_container(run.client, controller)
            remove_network(run.client, network)
        sandbox = work.sandbox
        if sandbox.timed_out:
            work.run_problem = f"the playbook was stopped at the {run.timeout:.0f}s time limit"
            summary = f"stopped at the {run.timeout:.0f}s limit"
        elif sandbox.ok:
            summary = "ansible-playbook succeeded"
        else:
            summary = f"ansible-playbook failed (exit {sandbox.returncode})"
            work.run_problem = f"the playbook failed: {first_failure(sandbox.log) or summary}"
        summary += f", {len(work.fetched)} file(s) fetched"
        work.report(self.name, summary, time.monotonic() - started)
        if sandbox.timed_out:
            progress(f"grade: {work.name}: {work.run_problem}")


def check_mirror(run: GradingRun) -> None:
    """The runtime the VMs pull is the one the grader published, before each submission's VM starts.

    VMs reach the mirror read-only, so no submission can change it; this
    catches anything else that did.
    """
    if run.runtime_digest is None:
        return
    ensure_mirror(run.client)
    served = runtime_digest(run.images.registry)
    if served != run.runtime_digest:
        raise LocalCloudError(
            f"the registry mirror serves the runtime as {served}, not {run.runtime_digest} as published;"
            " run `dcgan-harness cloud down --all` and grade again"
        )


def first_failure(log: str) -> str:
    """The task that stopped the play and Ansible's message, from the play's output.

    Failures of tasks with ignore_errors are followed by '...ignoring' and do not count.
    """
    # Only newlines end Ansible's lines; splitlines() would also break a task
    # name at the form feeds or NELs a student put in it.
    lines = log.split("\n")
    task = ""
    for number, line in enumerate(lines):
        header = TASK_HEADER.match(line)
        if header:
            task = header.group("name")
            continue
        failed = FAILED_LINE.match(line)
        if failed and not _ignored(lines, number):
            return f"task '{task}': {_message_of(failed.group('detail'))}"
    return ""


def _ignored(lines: list[str], number: int) -> bool:
    following = next((line for line in lines[number + 1 :] if line.strip()), "")
    return following.startswith("...ignoring")


def _message_of(detail: str) -> str:
    try:
        result = json.loads(detail)
        message = str(result.get("msg", detail))
    except (ValueError, AttributeError):
        return _message_of_cut(detail)
    # "non-zero return code" alone tells a student nothing; the command's own
    # last words usually name the cause.
    said = _last_line(result.get("stderr")) or _last_line(result.get("stdout"))
    if "rc" in result and said:
        message = f"{message} (exit {result['rc']}): {said}"
    return _one_line(message)


def _message_of_cut(detail: str) -> str:
    msg, rc = MSG_FIELD.search(detail), RC_FIELD.search(detail)
    if msg is None:
        return _one_line(detail)
    try:
        message = str(json.loads(msg.group(1)))
    except ValueError:
        message = msg.group(1)
    return _one_line(f"{message} (exit {rc.group(1)})" if rc else message)


def _last_line(text) -> str:
    lines = [line for line in str(text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]
