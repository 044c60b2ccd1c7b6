"""What the AWS tests share: the moto account as the project sees it, and the tools that drive it."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3

REPO_ROOT = Path(__file__).resolve().parents[2]
SRC_DIR = REPO_ROOT / "src"
if str(SRC_DIR) not in sys.path:
    sys.path.insert(0, str(SRC_DIR))

BIN_DIR = Path(sys.executable).parent
# Not us-east-1, so a setting that silently fell back to the default region
# would show up as a VM in the wrong place.
REGION = "eu-west-1"
KEYPAIR = "dcgan-test-key"
UBUNTU_AMI = "ami-0c4f7023847b90238"
# Distinctive, so a test can prove it never reaches the output.
SECRET = "moto-secret-never-printed-0123456789"
PROJECT_FILTERS = [
    {"Name": "tag:Project", "Values": ["dcgan-harness"]},
    {"Name": "tag:Run", "Values": ["dcgan"]},
]

# moto only knows the AMIs it is given when MOTO_AMIS_PATH is set, and
# describe_images on an unknown id fails; the playbooks look the image up.
UBUNTU_IMAGE = {
    "ami_id": UBUNTU_AMI,
    "name": "ubuntu/images/hvm-ssd/ubuntu-focal-20.04-amd64-server-20230112",
    "description": "Canonical, Ubuntu, 20.04 LTS, amd64 focal image",
    "owner_id": "099720109477",
    "public": True,
    "virtualization_type": "hvm",
    "architecture": "x86_64",
    "state": "available",
    "image_type": "machine",
    "hypervisor": "xen",
    "root_device_name": "/dev/sda1",
    "root_device_type": "ebs",
    "sriov": "simple",
    "creation_date": "2023-01-12T00:00:00.000Z",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# urllib would send even 127.0.0.1 through an HTTP(S)_PROXY from the environment.
LOCAL_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def moto_ready(url: str) -> bool:
    try:
        with LOCAL_HTTP.open(f"{url}/moto-api/", timeout=1):
            return True
    except OSError:
        return False


class MotoServerError(Exception):
    """The moto server did not come up; the message holds the end of its log."""


@contextmanager
def moto_server(workdir: Path) -> Iterator[str]:
    """A moto server in its own process, so its MOTO_* settings apply from import on; yields its URL."""
    amis = workdir / "amis.json"
    amis.write_text(json.dumps([UBUNTU_IMAGE]))
    log_path = workdir / "moto.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(
        os.environ,
        MOTO_AMIS_PATH=str(amis),
        MOTO_ENABLE_KEYPAIR_VALIDATION="true",
        MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION="true",
    )
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while not moto_ready(url):
                if server.poll() is not None or time.monotonic() > deadline:
                    raise MotoServerError(f"moto server did not start: {log_path.read_text()[-2000:]}")
                time.sleep(0.2)
            yield url
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def base_env(moto_url: str) -> dict[str, str]:
    """The environment `source vars.sh` would give, aimed at moto."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "MOTO_", "DCGAN_")) and key not in ("ANSIBLE_CONFIG", "PYTHONPATH")
    }
    env.update(
        AWS_ACCESS_KEY_ID="AKIAMOTOTESTING00000",
        AWS_SECRET_ACCESS_KEY=SECRET,
        AWS_REGION=REGION,
        KEYPAIR_NAME=KEYPAIR,
        AWS_URL=moto_url,
        AWS_ENDPOINT_URL=moto_url,
        # No profile, shared file or instance metadata may answer instead of moto.
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        PYTHONPATH=str(SRC_DIR),
        ANSIBLE_NOCOLOR="1",
        NO_COLOR="1",
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_DEPRECATION_WARNINGS="false",
    )
    if (REPO_ROOT / "ansible.cfg").is_file():
        env["ANSIBLE_CONFIG"] = str(REPO_ROOT / "ansible.cfg")
    return env


def child_pids(pid: int) -> list[int]:
    """Children of every thread of the process (Linux /proc)."""
    found = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found.extend(int(child) for child in children.read_text().split())
        except OSError:
            pass
    return found


def kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants, found before any of them dies.

    A process group is not enough: ansible's workers start sessions of their own.
    """
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending.extend(child_pids(current))
    for member in tree:
        try:
            os.kill(member, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_to_completion(
    command: list[str], env: dict[str, str], timeout: float, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """Run a command to completion; on timeout it goes with every process it started."""
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(process.pid)
        process.communicate()
        raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@dataclass
class Cloud:
    """One moto account seen the way the project sees AWS, plus the tools to drive it."""

    url: str
    env: dict[str, str]
    key_file: Path

    def ec2(self, region: str = REGION):
        return boto3.client(
            "ec2",
            region_name=region,
            endpoint_url=self.url,
            aws_access_key_id="AKIAMOTOTESTING00000",
            aws_secret_access_key="unused-by-moto",
        )

    def run(self, *command: str, env: dict[str, str] | None = None, timeout: int = 180):
        return run_to_completion(list(command), env if env is not None else self.env, timeout, cwd=REPO_ROOT)

    def playbook(self, playbook: str, *extra: str, env: dict[str, str] | None = None):
        """Run a playbook the way the Makefile does, but never SSH to moto's made-up addresses.

        wait_for_ssh is off unless extra turns it on, and every host, the new
        VMs included, is reached through a local connection.
        """
        return self.run(
            str(BIN_DIR / "ansible-playbook"),
            "-i",
            "localhost,",
            playbook,
            "-e",
            "wait_for_ssh=false",
            "-e",
            f"ssh_key_file={self.key_file}",
            *extra,
            "-e",
            "ansible_connection=local",
            # The interpreter discovered on localhost may be a slow shim (pyenv).
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            env=env,
        )

    def aws_cli(self, *args: str, env: dict[str, str] | None = None):
        return self.run(sys.executable, "-m", "dcgan_harness.aws", *args, "--key-file", str(self.key_file), env=env)

    def instances(self, *filters: dict, region: str = REGION, live: bool = True) -> list[dict]:
        all_filters = list(filters)
        if live:
            all_filters.append({"Name": "instance-state-name", "Values": ["pending", "running", "stopped"]})
        pages = self.ec2(region).get_paginator("describe_instances").paginate(Filters=all_filters)
        return [instance for page in pages for res in page["Reservations"] for instance in res["Instances"]]

    def project_instances(self, region: str = REGION) -> list[dict]:
        return self.instances(*PROJECT_FILTERS, region=region)

    def security_groups(self, region: str = REGION) -> list[dict]:
        return self.ec2(region).describe_security_groups()["SecurityGroups"]

    def launch(self, tagged: bool = True, **overrides) -> dict:
        """A VM made behind the playbooks' back, by default to the spec."""
        params = dict(
            ImageId=UBUNTU_AMI,
            InstanceType="t2.medium",
            KeyName=KEYPAIR,
            MinCount=1,
            MaxCount=1,
            BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 16, "DeleteOnTermination": True}}],
        )
        if tagged:
            tags = [{"Key": f["Name"].split(":", 1)[1], "Value": f["Values"][0]} for f in PROJECT_FILTERS]
            params["TagSpecifications"] = [{"ResourceType": "instance", "Tags": tags}]
        params.update(overrides)
        return self.ec2().run_instances(**params)["Instances"][0]


def unwrap(value):
    """ansible-inventory (core 2.19) writes untrusted strings as {"__ansible_unsafe": "..."}."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {key: unwrap(item) for key, item in value.items()}
    if isinstance(value, list):
        return [unwrap(item) for item in value]
    return value


def describe(result: subprocess.CompletedProcess) -> str:
    """Enough of a finished command to see why an assertion failed."""
    command = shlex.join(str(part) for part in result.args)
    return (
        f"$ {command}\nrc={result.returncode}\n"
        f"--- stdout\n{result.stdout[-6000:]}\n--- stderr\n{result.stderr[-3000:]}"
    )


def new_cloud(moto_url: str, workdir: Path) -> Cloud:
    """Empty moto, then the key pair and key file vars.sh points at."""
    LOCAL_HTTP.open(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST"), timeout=10).close()
    key_file = workdir / "key.pem"
    key_file.write_text("not a real key; the playbooks never log in to moto's VMs\n")
    key_file.chmod(0o600)
    cloud = Cloud(url=moto_url, env=base_env(moto_url), key_file=key_file)
    cloud.ec2().create_key_pair(KeyName=KEYPAIR)
    return cloud
