"""configure.yaml end to end on the local cloud: the engine of `make run`,
the e2e tests and `make bench`.

A session brings the images and VMs up, decides where the application comes
from (upstream when it can be reached, else the project's offline app served
over git), stages MNIST, and runs the playbook as many times as asked before
it takes everything down again.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from . import mnist, report
from .errors import HarnessError
from .interrupts import sigterm_as_ctrl_c
from .localcloud import (
    Cloud,
    LocalCloudError,
    check_app_dir,
    down,
    ensure_engine,
    prepare_images,
    progress,
    serve_app,
    state_dir,
)
from .localcloud.controller import create_sandbox_network
from .localcloud.images import (
    DEFAULT_VM_IMAGE,
    REGISTRY_PORT,
    chosen_vm_image,
)
from .localcloud.lxd import lxd_available
from .localcloud.vms import (
    RUN_LABEL,
    Machine,
    check_run_id,
    new_run_id,
    write_inventory,
)
from .output import Expectations, check_complete, parse_output_file
from .playbook_run import PlaybookResult, run_playbook
from .targets import Target
from .targets.docker_vms import DockerVms
from .targets.lxd import LxdVms, bridge_of, local_services

REPO_ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO_ROOT / "configure.yaml"
OFFLINE_APP = REPO_ROOT / "tests" / "e2e" / "fixtures" / "app"
DOCKER_VMS = "docker"
UNPRIVILEGED_VMS = "unprivileged"
VM_KINDS = ("auto", UNPRIVILEGED_VMS, DOCKER_VMS)
UPSTREAM_URL = "https://github.com/otavioon/Distributed-DCGAN.git"
UPSTREAM_PROBE_TIMEOUT_S = 10
# Settings of the fast run that CI uses: two iterations of a narrow DCGAN.
FAST_MNIST_LIMIT = 256
FAST_EXTRA_ARGS = "--ngf 16 --ndf 16"


def default_mnist_dir() -> Path:
    """$DCGAN_MNIST_DIR; else ../shared/data/mnist beside the checkout (CI's); else .cache/mnist, fetched on first use."""
    given = os.environ.get("DCGAN_MNIST_DIR")
    if given:
        return Path(given)
    beside = REPO_ROOT.parent / "shared" / "data" / "mnist"
    if beside.is_dir():
        return beside
    # A newcomer's clone has neither: the files come once from the published mirror.
    return mnist.fetch_test_files(REPO_ROOT / ".cache" / "mnist")


@dataclass
class RunOptions:
    nodes: int = 1
    app: str = "auto"  # auto, upstream or offline
    app_dir: Path = OFFLINE_APP
    mnist_dir: Path | None = None
    mnist_limit: int | None = None
    extra_args: str = ""
    results_dir: Path = REPO_ROOT / "resultados"
    run_id: str | None = None
    batch_size: int = 128
    ranks_per_vm: int = 1
    # bookworm, bullseye or ubuntu; None: $DCGAN_VM_IMAGE, else bookworm.
    vm_image: str | None = None
    # docker (VMs that are root here) or unprivileged (LXD, bookworm only).
    vms: str = DOCKER_VMS
    # The playbook to deploy: the repository's, or a student's own.
    playbook: Path = PLAYBOOK

    @property
    def world_size(self) -> int:
        return self.nodes * self.ranks_per_vm


@dataclass
class LocalSession:
    """A local cloud with the app served and MNIST staged, ready for playbook runs."""

    options: RunOptions
    cloud: Cloud
    target: Target
    repo_url: str
    repo_commit: str | None
    mnist_dir: Path
    phase_seconds: dict[str, float] = field(default_factory=dict)
    runs: int = 0

    @property
    def expected_iterations(self) -> int:
        """Iterations of each rank: its DistributedSampler shard of ceil(images / world size), in batches."""
        images = self.options.mnist_limit or 10_000
        return math.ceil(math.ceil(images / self.options.world_size) / self.options.batch_size)

    def host_ranks(self, host: str) -> list[int]:
        """The ranks configure.yaml gives a host: its position in the play times the ranks per VM."""
        index = [vm.node for vm in self.cloud.vms].index(host)
        per_vm = self.options.ranks_per_vm
        return list(range(index * per_vm, (index + 1) * per_vm))

    def extra_vars(self, **overrides) -> dict:
        values = {
            "dcgan_repo_url": self.repo_url,
            "dcgan_mnist_dir": str(self.mnist_dir),
            "dcgan_extra_args": self.options.extra_args,
            "dcgan_results_dir": str(self.options.results_dir),
            "dcgan_batch_size": self.options.batch_size,
            "dcgan_ranks_per_vm": self.options.ranks_per_vm,
            # Short polls: local runs are watched by people and tests alike, and
            # a build or training run ends on average half a poll before Ansible
            # sees it. A poll is one round trip on the multiplexed SSH connection.
            "dcgan_build_poll": 1,
            "dcgan_run_poll": 1,
        }
        values.update(overrides)
        return values

    def deploy(self, echo: bool = True, **overrides) -> PlaybookResult:
        self.runs += 1
        log = state_dir(self.cloud.run_id) / f"ansible-run{self.runs}.log"
        progress(f"localrun: ansible-playbook {self.options.playbook} (run {self.runs}, log {log})")
        return run_playbook(
            self.options.playbook, self.cloud.inventory, self.extra_vars(**overrides), log_path=log, echo=echo
        )

    def output_file(self, host: str = "compute01") -> Path:
        return self.options.results_dir / host / "output.txt"

    def close(self) -> None:
        self.target.down()


@contextmanager
def timed(phases: dict[str, float], name: str):
    started = time.monotonic()
    try:
        yield
    finally:
        phases[name] = round(time.monotonic() - started, 2)


def upstream_reachable(timeout: float = UPSTREAM_PROBE_TIMEOUT_S) -> bool:
    try:
        probe = subprocess.run(
            ["git", "ls-remote", "--exit-code", UPSTREAM_URL, "HEAD"],
            check=False, capture_output=True, timeout=timeout, env=dict(os.environ, GIT_TERMINAL_PROMPT="0"),
        )
    except (subprocess.TimeoutExpired, FileNotFoundError):
        return False
    return probe.returncode == 0


def stage_mnist(options: RunOptions, work: Path) -> Path:
    """The folder the playbook stages from: the verified files, or their first K images."""
    source = options.mnist_dir or default_mnist_dir()
    mnist.verify_test_files(source)
    if not options.mnist_limit:
        return Path(source)
    subset = work / f"mnist-first-{options.mnist_limit}"
    mnist.write_subset(source, subset, options.mnist_limit)
    return subset


def open_session(options: RunOptions) -> LocalSession:
    """Engine, images, app source and VMs; the caller closes the session."""
    if options.app == "offline" or options.app == "auto":
        check_app_dir(options.app_dir, "--app-dir")
    check_playbook(options.playbook)
    work = REPO_ROOT / ".cache" / "localrun"
    work.mkdir(parents=True, exist_ok=True)
    # Bad data fails here, before anything is started.
    mnist_dir = stage_mnist(options, work)
    run_id = check_run_id(options.run_id or new_run_id())
    phases: dict[str, float] = {}
    with timed(phases, "engine"):
        client = ensure_engine()
    with timed(phases, "image"):
        images = prepare_images(client, options.vm_image)
    try:
        # Served before the VMs start: unprivileged VMs reach the git server
        # through a device made with them.
        repo_url, commit = _choose_app(options, run_id, client)
        with timed(phases, "vm_up"):
            target, repo_url = start_target(options, run_id, client, images, repo_url)
    except BaseException:
        down(run_id, client=client)
        raise
    return LocalSession(options, cloud_view(target, images.vm_image), target, repo_url, commit, mnist_dir, phases)


def check_playbook(playbook: Path) -> None:
    if not Path(playbook).is_file():
        raise LocalCloudError(f"--playbook {playbook}: no such file; give the path of a configure.yaml")


def start_target(options: RunOptions, run_id: str, client, images, repo_url: str) -> tuple[Target, str]:
    """The run's VMs, and the URL they clone the app from."""
    if options.vms != UNPRIVILEGED_VMS:
        return DockerVms(options.nodes, run_id, client=client, images=images).up(), repo_url
    if images.vm_image != DEFAULT_VM_IMAGE:
        raise LocalCloudError(
            f"--vms unprivileged runs the {DEFAULT_VM_IMAGE} VM image only ({images.vm_image}'s docker.io cannot "
            "unpack image layers in a user namespace); use --vms docker for it"
        )
    services, vm_url = local_services(client, images, repo_url)
    network = None
    if options.nodes > 1:
        # The VMs train as one job, so they reach each other, and only each other.
        name = f"dcgan-net-{run_id}"
        create_sandbox_network(client, name, {RUN_LABEL: run_id})
        network = bridge_of(client, name)
    target = LxdVms(
        options.nodes, run_id, docker_client=client, vm_image=images.vm, services=services,
        mirror_port=REGISTRY_PORT, network=network,
    )  # fmt: skip
    target.up()
    return target, vm_url


def cloud_view(target: Target, vm_image: str) -> Cloud:
    """What the session's users read of its VMs: names, nodes, SSH ports, addresses, the inventory."""
    if isinstance(target, DockerVms):
        return target.cloud
    machines = [
        Machine(m.name, "vm", "running", target.run_id, m.node, m.ssh().port, getattr(m, "address", ""))
        for m in target.machines
    ]
    inventory = write_inventory(state_dir(target.run_id) / "inventory.yaml", machines, target.key)
    return Cloud(run_id=target.run_id, inventory=inventory, key=target.key, vms=machines, vm_image=vm_image)


def _choose_app(options: RunOptions, run_id: str, client) -> tuple[str, str | None]:
    if options.vms == UNPRIVILEGED_VMS and options.app == "upstream":
        raise LocalCloudError(
            "--vms unprivileged VMs reach only the local services, not GitHub; drop --upstream or use --vms docker"
        )
    use_upstream = options.app == "auto" and options.app_dir == OFFLINE_APP and options.vms != UNPRIVILEGED_VMS
    if options.app == "upstream" or (use_upstream and upstream_reachable()):
        progress(f"localrun: the VMs clone upstream {UPSTREAM_URL}")
        return UPSTREAM_URL, None
    served = serve_app(options.app_dir, run_id, client=client)
    return served.url, served.commit


# --- Command line -------------------------------------------------------------------


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Run configure.yaml on fresh local VMs and fetch output.txt.")
    parser.add_argument("--nodes", type=int, default=1, help="number of VMs; they train as one job (default 1)")
    parser.add_argument("--ranks-per-vm", type=int, default=1, help="training processes per VM (default 1)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--app-dir", type=Path, help="serve this folder (Dockerfile + dist_dcgan.py) as the app")
    source.add_argument("--upstream", action="store_true", help="clone upstream; fail if it cannot be reached")
    source.add_argument("--offline", action="store_true", help="serve the project's offline app even if upstream is reachable")
    parser.add_argument("--mnist-dir", type=Path, help="folder with the MNIST t10k files (default $DCGAN_MNIST_DIR, else ../shared/data/mnist, else .cache/mnist, fetched once)")
    parser.add_argument("--mnist-limit", type=int, help="stage only the first K test images, for a fast run")
    parser.add_argument("--extra-args", default="", help="extra arguments for dist_dcgan.py, e.g. '--ngf 16 --ndf 16'")
    parser.add_argument("--fast", action="store_true", help=f"--mnist-limit {FAST_MNIST_LIMIT} --extra-args '{FAST_EXTRA_ARGS}'")
    parser.add_argument("--results-dir", type=Path, default=REPO_ROOT / "resultados")
    parser.add_argument("--keep", action="store_true", help="leave the VMs up afterwards (remove them with `cloud down`)")
    parser.add_argument("--playbook", type=Path, default=PLAYBOOK,
                        help="the playbook to deploy (default: the repository's configure.yaml)")
    parser.add_argument("--vms", choices=VM_KINDS, default="auto",
                        help="unprivileged: LXD VMs whose root is not this machine's (bookworm; one job's VMs reach "
                             "each other only); docker: the Docker VMs, root here; auto (default): unprivileged "
                             "where LXD runs or can be started and the VM image is bookworm")  # fmt: skip
    parser.add_argument(
        "--vm-image", choices=["bookworm", "bullseye", "ubuntu"],
        help="the VMs' system: bullseye (Debian 11, like the course's Ubuntu 20.04), bookworm (Debian 12) or "
        "ubuntu (ubuntu:20.04 from Docker Hub); default $DCGAN_VM_IMAGE, else bookworm",
    )
    return parser


def options_from(args: argparse.Namespace) -> RunOptions:
    app = "upstream" if args.upstream else "offline" if (args.offline or args.app_dir) else "auto"
    options = RunOptions(
        nodes=args.nodes, ranks_per_vm=args.ranks_per_vm, app=app, app_dir=(args.app_dir or OFFLINE_APP).resolve(),
        mnist_dir=args.mnist_dir, mnist_limit=args.mnist_limit, extra_args=args.extra_args,
        results_dir=args.results_dir.resolve(), vm_image=args.vm_image,
        playbook=args.playbook.resolve(), vms=chosen_vms(args.vms, args.vm_image, args.upstream),
    )
    if args.fast:
        options.mnist_limit = options.mnist_limit or FAST_MNIST_LIMIT
        options.extra_args = options.extra_args or FAST_EXTRA_ARGS
    if args.nodes < 1:
        raise LocalCloudError(f"--nodes must be at least 1, not {args.nodes}")
    if args.ranks_per_vm < 1:
        raise LocalCloudError(f"--ranks-per-vm must be at least 1, not {args.ranks_per_vm}")
    if args.mnist_limit is not None and args.mnist_limit < 1:
        raise LocalCloudError(f"--mnist-limit must be at least 1, not {args.mnist_limit}; leave it out for all 10,000 images")
    if args.upstream and not upstream_reachable():
        raise LocalCloudError(f"--upstream: {UPSTREAM_URL} cannot be reached from here; drop --upstream to use the offline app")
    return options


def chosen_vms(asked: str, vm_image: str | None, upstream: bool = False) -> str:
    """auto: the unprivileged VMs wherever they can run this VM image, else the Docker VMs."""
    if asked != "auto":
        return asked
    if upstream or chosen_vm_image(vm_image) != DEFAULT_VM_IMAGE or not lxd_available():
        return DOCKER_VMS
    return UNPRIVILEGED_VMS


def output_problems(session: LocalSession, host: str) -> list[str]:
    """What keeps a host's fetched output.txt from being its complete part of the job."""
    path = session.output_file(host)
    if not path.is_file():
        return [f"{path} was not fetched"]
    expected = Expectations.from_settings(
        session.options.mnist_limit or 10_000, session.options.batch_size,
        world_size=session.options.world_size, ranks=session.host_ranks(host),
    )
    return check_complete(parse_output_file(path), expected)


def report_outputs(session: LocalSession) -> int:
    """Check every host's fetched output.txt; the number of hosts with problems."""
    failing = 0
    for vm in session.cloud.vms:
        output = session.output_file(vm.node)
        problems = output_problems(session, vm.node)
        for problem in problems:
            print(f"{vm.node}: output.txt: {problem}", file=sys.stderr)
        progress(f"localrun: {output} holds the run's output" + ("" if problems else ", complete"))
        failing += bool(problems)
    return failing


def write_run_report(results_dir: Path) -> None:
    """report.md, report.json and losses.png beside the outputs, also of a failed run."""
    try:
        document = report.write_report(results_dir)
    except report.ReportError as error:
        print(f"localrun: no report: {error}", file=sys.stderr)
        return
    for line in report.summary_lines(document):
        progress(f"localrun: report: {line}")
    progress(f"localrun: report in {results_dir / report.REPORT_MD}")


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    args = build_parser(prog).parse_args(argv)
    with sigterm_as_ctrl_c():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        options = options_from(args)
        session = open_session(options)
    except HarnessError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_status
    except KeyboardInterrupt:
        print("interrupted; `dcgan-harness cloud down` removes whatever was left", file=sys.stderr)
        return 130
    progress(f"localrun: the VMs run VM image {session.cloud.vm_image}")
    try:
        result = session.deploy()
        write_run_report(options.results_dir)
        if not result.ok:
            print(f"error: the playbook failed (exit {result.returncode}); see the output above and {options.results_dir}", file=sys.stderr)
            return 1
        return 1 if report_outputs(session) else 0
    except KeyboardInterrupt:
        print("interrupted; removing the VMs", file=sys.stderr)
        return 130
    finally:
        _finish(session, args.keep)


def _finish(session: LocalSession, keep: bool) -> None:
    if keep:
        progress(f"localrun: VMs kept (run {session.cloud.run_id}); inventory {session.cloud.inventory}")
        return
    try:
        session.close()
    except LocalCloudError as error:
        print(f"error: removing the VMs failed: {error}; run `dcgan-harness cloud down`", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
