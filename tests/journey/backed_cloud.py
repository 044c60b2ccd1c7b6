"""What the offline AWS journey is made of: moto's instances backed by local
VMs, and a student-like copy of the repository to run make in.

moto gives each instance a made-up public address. The backer below watches
moto and starts one local VM per running instance of the journey's run; the
VM authorises the public key imported into moto's key pair, as EC2 does. An
SSH config, given to Ansible through this layer's environment only, maps each
made-up address to its VM's loopback port, and fails every other address in
its ProxyCommand, so nothing is ever sent to a made-up address. The
playbooks, the dynamic inventory and the Makefile run unchanged, in a
throwaway copy of the repository, so key.pem, vars.sh and resultados/ never
land in the checkout.
"""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

AWS_TESTS = Path(__file__).resolve().parents[1] / "aws"
if str(AWS_TESTS) not in sys.path:
    sys.path.insert(0, str(AWS_TESTS))

from moto_cloud import BIN_DIR, PROJECT_FILTERS, REPO_ROOT, run_to_completion

from dcgan_harness.grade.run import redirect_upstream_on
from dcgan_harness.targets.docker_vms import DockerVms
from dcgan_harness.localcloud import down, status

# Debian 11 has the course VM's python3-docker 4.1.0 and docker.io 20.10.
VM_IMAGE = "bullseye"
# The settings vars.sh holds; everything else in base_env aims at moto.
VARS_SH_SETTINGS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "KEYPAIR_NAME")
MAKE_TIMEOUT_S = 900
VENV_STAMP = ".journey-venv-ready"


def make_venv_variables(copy: Path) -> list[str]:
    """make's variables that run the targets with the virtualenv running these tests.

    Without them make would build a virtualenv of its own in the copy (or,
    under tox, in place of tox's), with an editable install of the copy.
    """
    return [f"VENV={BIN_DIR.parent}", f"STAMP={copy / VENV_STAMP}"]

BACKER_POLL_S = 0.5
# Only its conversation with ssh reaches the user: ssh hides a ProxyCommand's
# stderr once ControlPersist is on (ansible.cfg turns it on), but prints a
# malformed version line in full ("Bad remote protocol version identification").
UNBACKED_PROXY = "printf 'SSH-no local VM backs %h in the offline AWS test: nothing was sent there\\r\\n'"


@dataclass
class Backing:
    """A moto instance and the local VM that answers SSH for its public address."""

    instance_id: str
    address: str
    run_id: str
    ssh_port: int
    vm_name: str


@dataclass
class Backer:
    """One local VM per running instance of a run in moto, removed when the instance goes.

    A thread compares moto with what it backs every BACKER_POLL_S seconds, so
    a VM appears while provision.yaml waits for SSH and goes while
    teardown.yaml runs, as on EC2.
    """

    ec2: object
    run_tag: str
    public_key: str
    ssh_config: Path
    known_hosts: Path
    run_prefix: str
    client: object
    images: object
    served_url: str
    backed: dict[str, Backing] = field(default_factory=dict)
    # Every run id ever started, also those whose up() failed half-way.
    run_ids: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # Instances that could not be backed are not retried, so a broken VM
    # image fails the wait once instead of booting VMs in a loop.
    failed: set[str] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self.write_config()
        self._thread = threading.Thread(target=self._loop, name="journey-backer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=300)

    def remove_all(self) -> None:
        for run_id in self.run_ids:
            down(run_id, self.client)
        self.backed.clear()
        self.write_config()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
            except Exception as error:  # noqa: BLE001 - the thread outlives a moto hiccup; the tests show it
                self.errors.append(f"{type(error).__name__}: {error}")
            self._stop.wait(BACKER_POLL_S)

    def running_instances(self) -> dict[str, str]:
        """Instance id -> public address, of the run's running instances."""
        filters = [
            PROJECT_FILTERS[0],
            {"Name": "tag:Run", "Values": [self.run_tag]},
            {"Name": "instance-state-name", "Values": ["running"]},
        ]
        found = {}
        for reservation in self.ec2.describe_instances(Filters=filters)["Reservations"]:
            for instance in reservation["Instances"]:
                if instance.get("PublicIpAddress"):
                    found[instance["InstanceId"]] = instance["PublicIpAddress"]
        return found

    def sync(self) -> None:
        live = self.running_instances()
        for instance_id in [i for i in self.backed if i not in live]:
            self._release(instance_id)
        for instance_id, address in live.items():
            if instance_id not in self.backed and instance_id not in self.failed:
                self._back(instance_id, address)

    def _back(self, instance_id: str, address: str) -> None:
        run_id = f"{self.run_prefix}-{len(self.run_ids) + 1}"
        self.run_ids.append(run_id)
        try:
            target = DockerVms(1, run_id, client=self.client, images=self.images, authorized_keys=[self.public_key]).up()
            vm = target.machines[0]
            # The VM clones github.com/otavioon/Distributed-DCGAN from the served stand-in.
            redirect_upstream_on(vm, self.served_url)
        except Exception as error:  # noqa: BLE001 - any failure is the test's to report, not the thread's
            self.failed.add(instance_id)
            self.errors.append(f"backing {instance_id} ({address}) failed: {error}")
            return
        self.backed[instance_id] = Backing(instance_id, address, run_id, vm.ssh_port, vm.name)
        self.write_config()

    def _release(self, instance_id: str) -> None:
        # Removed before it leaves `backed`, so an empty `backed` means no VM is left.
        down(self.backed[instance_id].run_id, self.client)
        del self.backed[instance_id]
        self.write_config()

    def write_config(self) -> None:
        """The address map, replaced in one rename so ssh never reads half a file."""
        lines = [
            "# Written by tests/journey: moto's made-up public addresses -> local VMs.",
            f"UserKnownHostsFile {self.known_hosts}",
        ]
        for backing in sorted(self.backed.values(), key=lambda b: b.address):
            lines += [
                f"# {backing.instance_id} is backed by {backing.vm_name}",
                f"Host {backing.address}",
                "    HostName 127.0.0.1",
                f"    Port {backing.ssh_port}",
                "    ProxyCommand none",
            ]
        lines += ["Host *", f"    ProxyCommand {UNBACKED_PROXY}", ""]
        staging = self.ssh_config.with_suffix(".new")
        staging.write_text("\n".join(lines))
        staging.replace(self.ssh_config)


@dataclass
class Journey:
    """A throwaway copy of the repository set up like a student's, and the tools to run make in it."""

    copy: Path
    env: dict[str, str]
    backer: Backer
    moto_url: str
    ec2: object
    key_file: Path
    wrong_key_file: Path
    run_vars: Path
    log_dir: Path
    runs: int = 0

    def make(self, target: str, *variables: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """`make <target>` in the copy, with the checkout's virtualenv and a fresh SSH control folder.

        A fresh control folder per make keeps an SSH master that an earlier,
        successful login left open from answering for a wrong key.
        """
        self.runs += 1
        control_dir = tempfile.mkdtemp(prefix="jcp-", dir="/tmp")
        command = ["make", "-C", str(self.copy), target, *make_venv_variables(self.copy), *variables]
        try:
            result = run_to_completion(
                command, dict(env or self.env, ANSIBLE_SSH_CONTROL_PATH_DIR=control_dir), MAKE_TIMEOUT_S
            )
        finally:
            shutil.rmtree(control_dir, ignore_errors=True)
        (self.log_dir / f"make-{self.runs:02d}-{target}.log").write_text(describe(result, full=True))
        return result

    def describe(self, result: subprocess.CompletedProcess) -> str:
        errors = "\n".join(self.backer.errors) or "none"
        return f"{describe(result)}\n--- backer errors\n{errors}\n--- logs in {self.log_dir}"


def describe(result: subprocess.CompletedProcess, full: bool = False) -> str:
    out, err = (result.stdout, result.stderr) if full else (result.stdout[-8000:], result.stderr[-3000:])
    return f"$ {shlex.join(result.args)}\nrc={result.returncode}\n--- stdout\n{out}\n--- stderr\n{err}"


def copy_tracked_files(destination: Path) -> None:
    """The checkout's tracked files as they are now, with their times, into destination."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO_ROOT / name
        if not source.exists():
            continue  # deleted in the working tree, not committed yet
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)
    # Newer than the copied pyproject.toml, so make sees a ready virtualenv.
    (destination / VENV_STAMP).touch()


def make_key_pair(path: Path) -> str:
    """An RSA key in PEM form, like the .pem file EC2 hands out; returns the public half."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-m", "PEM", "-N", "", "-C", path.name, "-f", str(path)],
        check=True,
    )
    path.chmod(0o600)
    public = path.with_name(path.name + ".pub")
    text = public.read_text().strip()
    public.unlink()
    return text


def repo_ssh_args() -> str:
    """ssh_args of the repository's ansible.cfg, which an ANSIBLE_SSH_ARGS would otherwise replace."""
    config = configparser.ConfigParser(interpolation=None)
    config.read(REPO_ROOT / "ansible.cfg")
    return config.get("ssh_connection", "ssh_args", fallback="")


def journey_machines(journey: Journey) -> list:
    """Containers of the journey's runs (VMs and the git server) that still exist."""
    return [m for run_id in [*journey.backer.run_ids, journey.backer.run_prefix] for m in status(run_id)]


def wait_until(predicate, timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
