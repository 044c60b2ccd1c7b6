"""How `dcgan-harness run --nodes N --ranks-per-vm K` numbers the ranks and
what each host's output must then hold; no VM needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcgan_harness.localcloud import Cloud, LocalCloudError, Machine
from dcgan_harness.localrun import LocalSession, RunOptions, build_parser, options_from


def session(nodes: int, ranks_per_vm: int, images: int) -> LocalSession:
    vms = [Machine(name=f"vm{i}", role="vm", state="running", run_id="t", node=f"compute0{i}") for i in range(1, nodes + 1)]
    options = RunOptions(nodes=nodes, ranks_per_vm=ranks_per_vm, mnist_limit=images)
    return LocalSession(options, Cloud("t", Path("inventory.yaml"), Path("key"), vms), None, "git://x/app.git", None, Path("."))


@pytest.mark.parametrize(
    ("nodes", "per_vm", "images", "iterations", "ranks"),
    [
        (1, 1, 256, 2, {"compute01": [0]}),
        (2, 1, 256, 1, {"compute01": [0], "compute02": [1]}),
        (2, 2, 10_000, 20, {"compute01": [0, 1], "compute02": [2, 3]}),
        (3, 1, 1000, 3, {"compute01": [0], "compute02": [1], "compute03": [2]}),
    ],
)
def test_ranks_follow_the_play_order_and_iterations_the_shard(nodes, per_vm, images, iterations, ranks):
    run = session(nodes, per_vm, images)
    assert run.options.world_size == nodes * per_vm
    assert run.expected_iterations == iterations
    assert {vm.node: run.host_ranks(vm.node) for vm in run.cloud.vms} == ranks
    assert run.extra_vars()["dcgan_ranks_per_vm"] == per_vm


@pytest.mark.parametrize("flag", ["--nodes", "--ranks-per-vm"])
def test_fewer_than_one_node_or_rank_is_refused(flag):
    with pytest.raises(LocalCloudError, match=f"{flag} must be at least 1, not 0"):
        options_from(build_parser().parse_args([flag, "0", "--offline"]))
