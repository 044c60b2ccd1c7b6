"""The run's git server: an application folder served as a git repository the
VMs can clone, standing in for GitHub."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

from .engine import LocalCloudError, ensure_engine, one_line_errors, progress
from .images import GIT_DAEMON_PORT, ensure_services_image, project_labels, tar_folder
from .vms import RUN_LABEL, check_run_id, exec_in

GIT_PREFIX = "dcgan-git"
# Deterministic identity and date: the same folder always gives the same commit.
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "dcgan-harness localcloud",
    "GIT_AUTHOR_EMAIL": "localcloud@dcgan-harness.invalid",
    "GIT_AUTHOR_DATE": "2000-01-01T00:00:00+0000",
    "GIT_COMMITTER_NAME": "dcgan-harness localcloud",
    "GIT_COMMITTER_EMAIL": "localcloud@dcgan-harness.invalid",
    "GIT_COMMITTER_DATE": "2000-01-01T00:00:00+0000",
}


@dataclass(frozen=True)
class ServedApp:
    url: str
    commit: str
    name: str


def commit_folder(app_dir: Path, bare_repo: Path) -> str:
    """Commit the folder as it is into a new bare repository; return the commit id.

    Fixed author, committer and date, and no user or system git config, so the
    same folder gives the same commit id on every machine and every run.
    """
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(bare_repo.parent),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        **GIT_IDENTITY,
    }
    bare_repo.parent.mkdir(parents=True, exist_ok=True)
    excludes = bare_repo.parent / "excludes"
    # Bytecode appears next to the app whenever its tests import it; it must not change the commit.
    excludes.write_text("__pycache__/\n*.pyc\n")
    git = ["git", "-c", f"core.excludesFile={excludes}", "-c", "commit.gpgsign=false", "-c", "core.autocrlf=false"]
    repo = ["--git-dir", str(bare_repo), "--work-tree", str(app_dir)]
    steps = [
        [*git, "init", "--quiet", "--bare", "--initial-branch=main", str(bare_repo)],
        [*git, *repo, "add", "--all", "."],
        [*git, *repo, "commit", "--quiet", "--no-verify", "-m", f"{app_dir.name} as served by the local cloud"],
        [*git, "--git-dir", str(bare_repo), "rev-parse", "HEAD"],
    ]
    output = ""
    for step in steps:
        proc = subprocess.run(step, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise LocalCloudError(f"committing {app_dir} failed at `git {step[7]}`: {proc.stderr.strip()[:160]}")
        output = proc.stdout.strip()
    (bare_repo / "index").unlink(missing_ok=True)
    return output


def check_app_dir(app_dir: Path, needed_by: str) -> None:
    """A DCGAN app folder holds a Dockerfile and dist_dcgan.py; say which is missing."""
    for required in ("Dockerfile", "dist_dcgan.py"):
        if not (Path(app_dir) / required).is_file():
            raise LocalCloudError(f"{app_dir} has no {required}; {needed_by} needs a folder with a Dockerfile and dist_dcgan.py")


@one_line_errors
def serve_app(
    app_dir: str | Path, run_id: str, name: str = "app", client: docker.DockerClient | None = None
) -> ServedApp:
    """Serve a folder as git://<address>/<name>.git for the run's VMs; return URL and commit."""
    app_dir = Path(app_dir).resolve()
    check_app_dir(app_dir, "serve_app")
    check_run_id(run_id)
    client = client or ensure_engine()
    with tempfile.TemporaryDirectory(prefix="localcloud-git-") as tmp:
        bare = Path(tmp) / f"{name}.git"
        commit = commit_folder(app_dir, bare)
        server = ensure_git_server(client, run_id)
        exec_in(server, ["rm", "-rf", f"/srv/git/{name}.git"])
        server.put_archive("/srv", tar_folder(bare, f"git/{name}.git"))
    server.reload()
    url = f"git://{server.attrs['NetworkSettings']['IPAddress']}/{name}.git"
    _check_served(server, name, commit)
    progress(f"localcloud: serving {app_dir} at {url} (commit {commit[:12]})")
    return ServedApp(url=url, commit=commit, name=name)


def ensure_git_server(client: docker.DockerClient, run_id: str):
    """The run's git daemon container, started on first use and removed by `down`."""
    name = f"{GIT_PREFIX}-{run_id}"
    try:
        server = client.containers.get(name)
        if server.status == "running":
            return server
        server.remove(force=True)
    except docker.errors.NotFound:
        pass
    return client.containers.run(
        ensure_services_image(client),
        [
            "git",
            "daemon",
            "--reuseaddr",
            "--export-all",
            "--base-path=/srv/git",
            f"--port={GIT_DAEMON_PORT}",
            "/srv/git",
        ],
        name=name,
        detach=True,
        # No tmpfs for /srv/git: put_archive writes beneath tmpfs mounts, unseen.
        labels=project_labels("git", **{RUN_LABEL: run_id}),
    )


def _check_served(server, name: str, commit: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    output = ""
    while time.monotonic() < deadline:
        code, output = exec_in(server, ["git", "ls-remote", f"git://127.0.0.1/{name}.git", "HEAD"])
        if code == 0 and output.startswith(commit):
            return
        time.sleep(0.3)
    raise LocalCloudError(
        f"the git server {server.name} does not serve {name}.git: {output[:120]}; see `docker logs {server.name}`"
    )




def served_tree(client: docker.DockerClient, run_id: str, name: str, commit: str) -> dict[str, str]:
    """path -> blob id of every file of a served commit, as the run's git server holds it."""
    server = ensure_git_server(client, run_id)
    code, output = exec_in(server, ["git", "--git-dir", f"/srv/git/{name}.git", "ls-tree", "-r", "-z", commit])
    if code != 0:
        raise LocalCloudError(f"the git server cannot list commit {commit[:12]} of {name}.git: {output[:120]}")
    tree = {}
    for entry in output.split("\0"):
        meta, _, path = entry.partition("\t")
        parts = meta.split()
        if len(parts) == 3 and parts[1] == "blob":
            tree[path] = parts[2]
    return tree
