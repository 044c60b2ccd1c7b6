"""Molecule's default (delegated) driver on the local cloud: create and destroy.

`molecule/default/create.yml` runs `python -m dcgan_harness.molecule_cloud
create`: a local session (a fresh VM shaped like the course's, the offline
app served, MNIST's first 256 test images staged) that stays up after this
program ends. It writes Molecule's instance config (where SSH reaches each
VM) and the variables converge passes to configure.yaml (the served URL, the
staged MNIST, the fast DCGAN). `destroy` removes the run.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path

import yaml

from .errors import run_command
from .localcloud import down, progress
from .localrun import (
    FAST_EXTRA_ARGS,
    FAST_MNIST_LIMIT,
    UNPRIVILEGED_VMS,
    RunOptions,
    chosen_vms,
    open_session,
)

RUN_ID_FILE = "dcgan-run-id"
MOLECULE_RUN_PREFIX = "mol"
VARS_FILE = "dcgan-vars.yml"


def create(ephemeral: Path, instance_config: Path, vms: str = "auto") -> str:
    """Bring the VM up and write what Molecule and converge need; the run id."""
    options = RunOptions(
        app="offline", mnist_limit=FAST_MNIST_LIMIT, extra_args=FAST_EXTRA_ARGS,
        results_dir=ephemeral / "resultados", vms=chosen_vms(vms, None), run_id=f"{MOLECULE_RUN_PREFIX}{secrets.token_hex(3)}",
    )  # fmt: skip
    session = open_session(options)
    ephemeral.mkdir(parents=True, exist_ok=True)
    (ephemeral / RUN_ID_FILE).write_text(session.cloud.run_id + "\n")
    instances = [
        {
            "instance": vm.node,
            "address": "127.0.0.1",
            "port": vm.ssh_port,
            "user": "ubuntu",
            "identity_file": str(session.cloud.key.resolve()),
        }
        for vm in session.cloud.vms
    ]
    instance_config.write_text(yaml.safe_dump(instances, sort_keys=False))
    values = {**session.extra_vars(), "dcgan_repo_commit": session.repo_commit}
    (ephemeral / VARS_FILE).write_text(yaml.safe_dump(values, sort_keys=False))
    kind = "unprivileged" if options.vms == UNPRIVILEGED_VMS else "Docker"
    progress(f"molecule: {len(instances)} {kind} VM(s) up, run {session.cloud.run_id}")
    return session.cloud.run_id


def destroy(ephemeral: Path) -> list[str]:
    """Remove the run create made; nothing to do when there was none."""
    path = ephemeral / RUN_ID_FILE
    if not path.is_file():
        return []
    removed = down(path.read_text().strip())
    path.unlink()
    return removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dcgan_harness.molecule_cloud", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    create_cmd = commands.add_parser("create")
    create_cmd.add_argument("--ephemeral", type=Path, required=True, help="Molecule's ephemeral folder")
    create_cmd.add_argument("--instance-config", type=Path, required=True)
    create_cmd.add_argument("--vms", choices=("auto", "unprivileged", "docker"), default="auto")
    destroy_cmd = commands.add_parser("destroy")
    destroy_cmd.add_argument("--ephemeral", type=Path, required=True)
    args = parser.parse_args(argv)

    def body() -> int:
        if args.command == "create":
            print(create(args.ephemeral, args.instance_config, args.vms))
        else:
            print("\n".join(destroy(args.ephemeral)))
        return 0

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
