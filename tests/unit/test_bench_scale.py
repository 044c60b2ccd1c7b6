"""The scaling benchmark's arithmetic on saved outputs: the all-reduce lines
configure.yaml's timer prints, divided by each rank's iterations."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dcgan_harness import bench, report

FIXTURES = Path(__file__).parent / "fixtures" / "report"


def test_allreduce_lines_are_read_per_rank():
    text = "noise\n[rank: 1] all-reduce: 8 calls, 0.5000 seconds\n[rank: 0] all-reduce: 12 calls, 1.25 seconds\n"
    assert bench.allreduce_totals(text) == {0: (12, 1.25), 1: (8, 0.5)}
    assert bench.allreduce_totals("[epoch: 0/1] nothing timed") == {}


def test_scale_rows_give_allreduce_time_per_iteration(tmp_path):
    root = tmp_path / "bench"
    shutil.copytree(FIXTURES / "one-node", root / "nodes-1")
    shutil.copytree(FIXTURES / "two-nodes", root / "nodes-2")
    # 4 iterations on 1 node, 2 per rank on 2 nodes.
    timed = {"nodes-1/compute01": (0, 16, 0.2), "nodes-2/compute01": (0, 8, 0.6), "nodes-2/compute02": (1, 8, 1.0)}
    for host, (rank, calls, seconds) in timed.items():
        with open(root / host / "output.txt", "a") as output:
            output.write(f"[rank: {rank}] all-reduce: {calls} calls, {seconds:.4f} seconds\n")
    document = report.write_report(root)
    one, two = (bench.scale_row(run, root) for run in document["runs"])
    assert one["allreduce_s_per_iteration"] == pytest.approx(0.05)
    assert one["allreduce_calls_per_iteration"] == 4
    # Mean of 0.6 / 2 and 1.0 / 2.
    assert two["allreduce_s_per_iteration"] == pytest.approx(0.4)
    assert (two["nodes"], two["epoch_s"], two["speedup"]) == (2, 4.0, pytest.approx(1.5))
    table = bench.format_scale_table({"mnist_images": 1024, "extra_args": "", "runs": [one, two]})
    assert "0.4000" in table
    assert "share this machine's cores" in table
