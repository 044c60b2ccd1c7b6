"""A disposable local cloud on the local Docker engine, standing in for AWS.

One module per part, found by its name:
  engine.py      connect to a Docker engine, or start one (as root)
  images.py      the images, built without any registry: base, VM, runtime,
                 services, and the registry mirror the VMs pull through
  vms.py         VMs: containers with systemd, sshd and nested Docker; their
                 keys, inventory and removal
  aptcache.py    the apt cache (apt-cacher-ng) every VM's apt goes through
  gitserver.py   an application folder served as a git repository (for GitHub)
  controller.py  the sandbox a grader runs a student's ansible-playbook in
  logcap.py      a log kept within bounds: its first and last lines
  command.py     `dcgan-harness cloud up|status|down|serve`
"""

from .engine import LocalCloudError, ensure_engine, progress
from .gitserver import ServedApp, check_app_dir, commit_folder, serve_app
from .images import CloudImages, prepare_images
from .vms import (
    NODE_LABEL,
    RUN_LABEL,
    Cloud,
    Machine,
    down,
    machine_from,
    ssh_command,
    state_dir,
    status,
    up,
    vm_name,
)

__all__ = [
    "NODE_LABEL",
    "RUN_LABEL",
    "Cloud",
    "CloudImages",
    "LocalCloudError",
    "Machine",
    "ServedApp",
    "check_app_dir",
    "commit_folder",
    "down",
    "ensure_engine",
    "machine_from",
    "prepare_images",
    "progress",
    "serve_app",
    "ssh_command",
    "state_dir",
    "status",
    "up",
    "vm_name",
]
