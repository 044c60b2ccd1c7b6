"""`dcgan-harness cloud`: start, list and remove local VMs, serve an app.

    dcgan-harness cloud up --nodes 2   # prints the inventory path
    dcgan-harness cloud status
    dcgan-harness cloud down           # removes every VM, also of killed runs
    dcgan-harness cloud down --all     # and the apt cache and registry mirror with their data
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import run_command
from ..interrupts import sigterm_as_ctrl_c
from .engine import LocalCloudError, progress
from .gitserver import serve_app
from .images import DEFAULT_VM_IMAGE, VM_IMAGE_ENV, VM_IMAGES
from .vms import BOOT_TIMEOUT_S, down, down_all, status, up


def _cmd_up(args: argparse.Namespace) -> int:
    cloud = up(args.nodes, args.run_id, args.ssh_port_base, args.boot_timeout, vm_image=args.vm_image)
    for vm in cloud.vms:
        progress(f"  {vm.node}: ssh -i {cloud.key} -p {vm.ssh_port} ubuntu@127.0.0.1")
    progress(
        f"run {cloud.run_id} is up on VM image {cloud.vm_image}; remove it with: dcgan-harness cloud down --run-id {cloud.run_id}"
    )
    print(cloud.inventory)
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    if args.all and args.run_id:
        raise LocalCloudError("--all removes every run and the caches; drop --run-id, or drop --all to remove one run")
    removed = down_all() if args.all else down(args.run_id)
    print(f"removed {len(removed)}: {' '.join(removed)}" if removed else "nothing to remove")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    machines = status(args.run_id)
    if not machines:
        print("no local cloud containers")
        return 0
    rows = [("NAME", "ROLE", "STATE", "SSH", "RUN")]
    rows += [(m.name, m.role, m.state, str(m.ssh_port or "-"), m.run_id or "-") for m in machines]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    served = serve_app(args.app_dir, args.run_id, args.name)
    print(f"{served.url} {served.commit}")
    return 0


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog or "dcgan-harness cloud", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up_cmd = commands.add_parser("up", help="start VMs and print the path of their Ansible inventory")
    up_cmd.add_argument("--nodes", type=int, default=1)
    up_cmd.add_argument("--run-id", help="name of this run (default: random)")
    up_cmd.add_argument(
        "--ssh-port-base", type=int, help="SSH of computeNN on this port + NN - 1 (default: free ports)"
    )
    up_cmd.add_argument("--boot-timeout", type=float, default=BOOT_TIMEOUT_S, help="seconds a VM may take to boot")
    up_cmd.add_argument(
        "--vm-image", choices=sorted(VM_IMAGES),
        help=f"bullseye: Debian 11, like the course's Ubuntu 20.04; bookworm: Debian 12; ubuntu: ubuntu:20.04 "
        f"from Docker Hub (default ${VM_IMAGE_ENV}, else {DEFAULT_VM_IMAGE})",
    )
    up_cmd.set_defaults(handler=_cmd_up)
    down_cmd = commands.add_parser("down", help="remove the VMs and their volumes (all runs unless --run-id)")
    down_cmd.add_argument("--run-id")
    down_cmd.add_argument(
        "--all", action="store_true",
        help="also remove the shared caches: the apt cache and the registry mirror, with their data",
    )
    down_cmd.set_defaults(handler=_cmd_down)
    status_cmd = commands.add_parser("status", help="list the local cloud's containers")
    status_cmd.add_argument("--run-id")
    status_cmd.set_defaults(handler=_cmd_status)
    serve_cmd = commands.add_parser("serve", help="serve an app folder as a git repository for a run's VMs")
    serve_cmd.add_argument("app_dir", type=Path)
    serve_cmd.add_argument("--run-id", required=True)
    serve_cmd.add_argument("--name", default="app")
    serve_cmd.set_defaults(handler=_cmd_serve)
    return parser


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """CLI entry point; errors become one line on stderr and exit status 2."""
    args = build_parser(prog).parse_args(argv)

    def body() -> int:
        # `up` removes its half-made run on Ctrl-C and on CI's SIGTERM alike.
        with sigterm_as_ctrl_c():
            return args.handler(args)

    return run_command(body, "interrupted; `dcgan-harness cloud down` removes whatever was left")

