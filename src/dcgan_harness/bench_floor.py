"""The floor each deploy phase is measured against: the same work done by hand on the same VM.

After the playbook's runs, `make bench` undoes each phase's work on the VM
(untimed) and redoes it with the bare command, timed:

  install  apt-get update + apt-get install of the playbook's packages, on a
           second fresh VM of the run's image: a removal cannot undo what a
           first install does (users, units, the engine's first start)
  pull     docker pull of the runtime image the app's Dockerfile builds FROM
  build    docker build of the same clone (its FROM pulls the runtime again)
  train    docker run of the same command, environment and mounts

Each phase's ratio to its floor is then the playbook's overhead for it.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .localcloud import LocalCloudError, Machine, ssh_command

PACKAGES = ("docker.io", "python3-docker", "git")
RUNTIME_IMAGE = "dcgan-runtime:latest"
APP_IMAGE = "dist_dcgan:latest"
WORK_DIR = "~/Distributed-DCGAN"
STEP_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Floor:
    """One bare step: what undoes the playbook's work, and the timed command."""

    phase: str
    undo: str
    command: str


def app_args(batch_size: int, extra_args: str) -> str:
    """dist_dcgan.py's arguments as configure.yaml's defaults and the fast run's settings make them."""
    return (
        "--dataset mnist --dataroot data --download --image_size 64 "
        f"--batch_size {batch_size} --out_folder output --test_data --num_epochs 1 --max_workers 1 {extra_args}"
    ).strip()


def floors(batch_size: int, extra_args: str) -> list[Floor]:
    """The bare equivalents, in the order they run: each leaves the VM as the next one needs it."""
    packages = " ".join(PACKAGES)
    # As Ansible's apt module runs it: no debconf question may wait for an answer.
    apt = "sudo DEBIAN_FRONTEND=noninteractive apt-get"
    train = (
        f"cd {WORK_DIR} && docker run --rm --env PYTHONUNBUFFERED=1 --env OMP_NUM_THREADS=$(nproc) "
        "--env RANK=0 --env LOCAL_RANK=0 --env WORLD_SIZE=1 --env MASTER_ADDR=127.0.0.1 --env MASTER_PORT=29500 "
        f"--network host --volume $PWD:/dcgan --workdir /dcgan {APP_IMAGE} "
        f"python dist_dcgan.py {app_args(batch_size, extra_args)} > bare-output.txt 2>&1"
    )
    return [
        # A fresh VM has no package lists and nothing to undo.
        Floor("install", "true", f"{apt} update -q && {apt} install -y -q {packages}"),
        Floor(
            "pull",
            f"docker rmi -f {APP_IMAGE} {RUNTIME_IMAGE} && docker image prune -f",
            f"docker pull -q {RUNTIME_IMAGE}",
        ),
        Floor("build", f"docker rmi {RUNTIME_IMAGE}", f"cd {WORK_DIR} && docker build -q -t {APP_IMAGE} ."),
        Floor("train", "true", train),
    ]


def run_on(vm: Machine, key: Path, command: str, what: str) -> str:
    proc = subprocess.run(
        ssh_command(vm, key, f"bash -c {shlex.quote(command)}"),
        capture_output=True, text=True, timeout=STEP_TIMEOUT_S, stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or [f"exit {proc.returncode}"]
        raise LocalCloudError(f"bench floor, {what} on {vm.name}: {last[0][:200]}")
    return proc.stdout


def measure_floors(
    vm: Machine, key: Path, batch_size: int, extra_args: str, fresh_vm: tuple[Machine, Path]
) -> dict[str, float]:
    """Seconds of each bare step: the install on fresh_vm (VM, key), the others on the playbook's VM."""
    seconds: dict[str, float] = {}
    for floor in floors(batch_size, extra_args):
        target, target_key = fresh_vm if floor.phase == "install" else (vm, key)
        run_on(target, target_key, floor.undo, f"undoing {floor.phase}")
        started = time.monotonic()
        run_on(target, target_key, floor.command, floor.phase)
        seconds[floor.phase] = round(time.monotonic() - started, 2)
    return seconds


def runtime_image_size(vm: Machine, key: Path) -> dict[str, float | int]:
    """The runtime image as the VM's engine holds it: size unpacked and layers."""
    out = run_on(
        vm, key, f"docker image inspect --format '{{{{.Size}}}} {{{{len .RootFS.Layers}}}}' {RUNTIME_IMAGE}", "inspect"
    )
    size, layers = out.split()
    return {"runtime_image_gb": round(int(size) / 1e9, 2), "runtime_image_layers": int(layers)}


def cpu_model() -> str:
    """The host's CPU, which the VMs share."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"
