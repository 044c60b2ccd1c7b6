"""configure.yaml across two local VMs as one distributed job: rank 0 and rank 1
of a world of 2, each with its shard of the data; a second run changes nothing;
a VM that lacks its finished run makes both retrain; a VM that disappears in the
middle of training makes the play fail within the process-group bound, naming
it, with the survivor's partial output fetched.

The tests run in file order on one pair of VMs; the last one kills a VM."""

from __future__ import annotations

import math
import re
import subprocess
import threading
import time

import docker
import numpy
import pytest
from matplotlib import image as mpimage

from dcgan_harness import report
from dcgan_harness.localcloud import ssh_command
from dcgan_harness.localrun import FAST_EXTRA_ARGS, FAST_MNIST_LIMIT, RunOptions, default_mnist_dir, open_session
from dcgan_harness.output import Expectations, check_complete, parse_output_file

HOSTS = ("compute01", "compute02")
TRAIN_TASK = "Train the DCGAN with its standard output going to output.txt"
# The kill test's process-group timeout and poll interval; the play must fail
# within their sum plus the time to fetch the outputs and report.
KILL_PG_TIMEOUT_S = 30
KILL_POLL_S = 5
KILL_SLACK_S = 60
# matplotlib's first two line colours, those of rank 0 and rank 1.
BLUE, ORANGE = (0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    options = RunOptions(
        nodes=2,
        app="offline",
        mnist_limit=FAST_MNIST_LIMIT,
        extra_args=FAST_EXTRA_ARGS,
        results_dir=tmp_path_factory.mktemp("resultados-2"),
    )
    session = open_session(options)
    try:
        session.first_run = session.deploy()
        yield session
    finally:
        session.close()


def pixels_of(path, colour) -> int:
    rgb = (mpimage.imread(path)[:, :, :3] * 255).round()
    return int(numpy.all(numpy.abs(rgb - numpy.array(colour)) <= 8, axis=-1).sum())


def node_expectations(session, rank: int) -> Expectations:
    """One VM's output.txt: its own rank of the two-node job, over the run's own images and batch size."""
    options = session.options
    return Expectations.from_settings(options.mnist_limit or 10_000, options.batch_size, world_size=2, ranks=[rank])


def remote(session, host: str, command: str) -> subprocess.CompletedProcess:
    vm = next(vm for vm in session.cloud.vms if vm.node == host)
    return subprocess.run(ssh_command(vm, session.cloud.key, command), capture_output=True, text=True, timeout=60)


def test_two_vms_train_as_ranks_0_and_1_of_one_job(pair):
    assert pair.first_run.ok, pair.first_run.tail()
    # Each rank's DistributedSampler shard is half the images.
    expected = math.ceil(FAST_MNIST_LIMIT / (2 * pair.options.batch_size))
    assert pair.expected_iterations == expected
    for rank, host in enumerate(HOSTS):
        path = pair.output_file(host)
        run = parse_output_file(path)
        assert run.rank_lines == [(rank, 2)], f"{path}: {run.rank_lines}"
        assert check_complete(run, node_expectations(pair, rank)) == []
        assert sorted(it.iteration for it in run.iterations) == list(range(expected))
        assert {it.rank for it in run.iterations} == {rank}
        assert set(run.epoch_times) == {(rank, 0)}


def job_settings(session, host: str) -> dict[str, str]:
    """The settings the play started a VM's ranks with, as it recorded them in job.env."""
    shown = remote(session, host, "cat ~/Distributed-DCGAN/job.env")
    assert shown.returncode == 0, shown.stderr
    return dict(line.split("=", 1) for line in shown.stdout.splitlines() if "=" in line)


def test_the_ranks_met_at_the_first_vms_private_address(pair):
    first = job_settings(pair, "compute01")
    master = first["MASTER_ADDR"]
    # The address Docker's bridge gave the first VM, not 127.0.0.1 nor its SSH port mapping.
    assert master == next(vm.ip for vm in pair.cloud.vms if vm.node == "compute01")
    for rank, host in enumerate(HOSTS):
        settings = job_settings(pair, host)
        assert settings["RANKS"] == str(rank) and settings["WORLD_SIZE"] == "2"
        assert settings["MASTER_ADDR"] == master and settings["MASTER_PORT"] == "29500"
        # gloo is pinned to the interface that carries the VM's address on that network.
        shown = remote(pair, host, f"ip -o -4 addr show dev {settings['GLOO_SOCKET_IFNAME']}")
        assert shown.returncode == 0 and " inet " in shown.stdout, shown.stderr
    assert master in remote(pair, "compute01", f"ip -o -4 addr show dev {first['GLOO_SOCKET_IFNAME']}").stdout


def test_report_holds_both_ranks_their_plot_and_samples(pair):
    document = report.write_report(pair.options.results_dir)
    [run] = document["runs"]
    assert (run["nodes"], run["world_size"], run["complete"]) == (2, 2, True)
    for rank, host in enumerate(HOSTS):
        entry = run["hosts"][host]
        assert entry["rank"] == rank and entry["iterations"] == pair.expected_iterations
        assert entry["epoch_seconds"] and entry["epoch_seconds"][0] > 0
        # The app's sample grid of the last epoch, fetched beside output.txt.
        assert entry["images"] == [f"{host}/fake_samples_epoch_000_rank_{rank}.png"]
        sample = pair.options.results_dir / entry["images"][0]
        assert sample.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plot = pair.options.results_dir / "losses.png"
    assert pixels_of(plot, BLUE) > 0 and pixels_of(plot, ORANGE) > 0


def test_second_run_changes_nothing(pair):
    before = {host: pair.output_file(host).read_bytes() for host in HOSTS}
    second = pair.deploy()
    assert second.ok, second.tail()
    assert second.changed_tasks == [], f"tasks changed on the second run: {second.changed_tasks}"
    assert {host: pair.output_file(host).read_bytes() for host in HOSTS} == before


def test_a_vm_without_its_finished_run_makes_both_retrain(pair):
    before = {host: pair.output_file(host).read_text() for host in HOSTS}
    removed = remote(pair, "compute02", "rm -v ~/Distributed-DCGAN/.dcgan-trained-*")
    assert removed.returncode == 0 and "removed" in removed.stdout, removed.stderr
    rerun = pair.deploy()
    assert rerun.ok, rerun.tail()
    assert TRAIN_TASK in rerun.changed_tasks
    for rank, host in enumerate(HOSTS):
        after = pair.output_file(host).read_text()
        # A retrained rank writes its file anew: the iteration times differ.
        assert after != before[host], f"{host} did not retrain"
        assert check_complete(parse_output_file(pair.output_file(host)), node_expectations(pair, rank)) == []


def test_a_vm_lost_mid_training_fails_the_play_within_the_bound(pair):
    outcome = {}

    def deploy():
        # All 10,000 images at full width: about 40 iterations per rank, long
        # enough to lose a VM in the middle.
        outcome["result"] = pair.deploy(
            echo=False,
            dcgan_fresh_run=True,
            dcgan_extra_args="",
            dcgan_mnist_dir=str(default_mnist_dir()),
            dcgan_pg_timeout=KILL_PG_TIMEOUT_S,
            dcgan_run_poll=KILL_POLL_S,
        )

    worker = threading.Thread(target=deploy)
    worker.start()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and worker.is_alive():
        probe = remote(pair, "compute02", "grep -c 'iteration: ' ~/Distributed-DCGAN/output.txt || true")
        if probe.stdout.strip().isdigit() and int(probe.stdout.strip()) >= 2:
            break
        time.sleep(2)
    assert worker.is_alive(), f"the run ended before a VM could be lost: {outcome['result'].tail()}"
    lost = next(vm for vm in pair.cloud.vms if vm.node == "compute02")
    docker.from_env().containers.get(lost.name).kill()
    killed_at = time.monotonic()
    worker.join(timeout=KILL_PG_TIMEOUT_S + KILL_POLL_S + KILL_SLACK_S + 120)
    elapsed = time.monotonic() - killed_at
    assert not worker.is_alive(), "the play still runs long after the VM was lost"
    result = outcome["result"]
    assert not result.ok
    assert elapsed < KILL_PG_TIMEOUT_S + KILL_POLL_S + KILL_SLACK_S, f"the play took {elapsed:.0f}s to fail"
    assert "compute02 (rank 1) dropped out" in result.output, result.tail()
    assert re.search(r"The DCGAN exited with status \d+ on compute01 \(rank 0\)", result.output), result.tail()
    survivor = parse_output_file(pair.output_file("compute01"))
    assert survivor.rank_lines == [(0, 2)]
    assert len(survivor.iterations) >= 2 and (0, 0) not in survivor.epoch_times
    print(f"lost VM: the play failed {elapsed:.1f}s after compute02 was killed")
