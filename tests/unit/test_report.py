"""`dcgan-harness report` on saved outputs: a 1-node run, a 2-node run, both
together, and a run whose rank crashed. The JSON figures, the Markdown table and
the pixels of the loss plot are checked, not only that the files exist."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy
import pytest
from matplotlib import image as mpimage

from dcgan_harness import cli, report

FIXTURES = Path(__file__).parent / "fixtures" / "report"
# matplotlib's first two line colours (C0, C1): rank lines are drawn in them.
BLUE = (0x1F, 0x77, 0xB4)
ORANGE = (0xFF, 0x7F, 0x0E)


def copy_run(name: str, destination: Path) -> Path:
    shutil.copytree(FIXTURES / name, destination)
    return destination


def pixels_of(path: Path, colour: tuple[int, int, int]) -> int:
    rgb = (mpimage.imread(path)[:, :, :3] * 255).round()
    return int(numpy.all(numpy.abs(rgb - numpy.array(colour)) <= 8, axis=-1).sum())


def strict_json(path: Path) -> dict:
    def refuse(constant):
        raise AssertionError(f"{path} holds {constant}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_one_node_run(tmp_path):
    root = copy_run("one-node", tmp_path / "results")
    document = report.write_report(root)
    assert strict_json(root / "report.json") == document
    [run] = document["runs"]
    assert (run["nodes"], run["world_size"], run["complete"]) == (1, 1, True)
    assert run["epoch_seconds"] == 6.0
    # The run is its own 1-node baseline.
    assert (run["speedup"], run["efficiency"]) == (1.0, 1.0)
    host = run["hosts"]["compute01"]
    assert host["rank"] == 0 and host["world_size"] == 1
    assert host["iterations"] == 4 and host["iterations_expected"] == 4
    assert host["mean_iteration_s"] == pytest.approx(1.49)
    assert host["median_iteration_s"] == pytest.approx(1.49)
    assert host["epoch_seconds"] == [6.0]
    assert host["first_losses"] == {"loss_d": 1.3862, "loss_g": 0.7001}
    assert host["last_losses"] == {"loss_d": 0.7310, "loss_g": 2.6021}
    assert host["problems"] == [] and host["output"] == "compute01/output.txt"


def test_two_node_run_has_both_ranks_and_no_speedup_without_a_baseline(tmp_path):
    root = copy_run("two-nodes", tmp_path / "results")
    [run] = report.write_report(root)["runs"]
    assert (run["nodes"], run["world_size"], run["complete"]) == (2, 2, True)
    assert {name: host["rank"] for name, host in run["hosts"].items()} == {"compute01": 0, "compute02": 1}
    assert all(host["iterations"] == 2 and host["world_size"] == 2 for host in run["hosts"].values())
    # The job's epoch is as long as its slowest rank.
    assert run["epoch_seconds"] == 4.0
    assert run["speedup"] is None and run["efficiency"] is None
    text = (root / "report.md").read_text()
    assert "| . | 2 | 2 | 4.0 | n/a | n/a |" in text
    assert "need a finished 1-node run" in text


def test_runs_side_by_side_get_speedup_and_efficiency_against_one_node(tmp_path):
    root = tmp_path / "results"
    copy_run("one-node", root / "nodes-1")
    copy_run("two-nodes", root / "nodes-2")
    runs = report.write_report(root)["runs"]
    assert [(run["folder"], run["nodes"]) for run in runs] == [("nodes-1", 1), ("nodes-2", 2)]
    assert runs[1]["speedup"] == pytest.approx(6.0 / 4.0)
    assert runs[1]["efficiency"] == pytest.approx(6.0 / 4.0 / 2)
    text = (root / "report.md").read_text()
    assert "| nodes-1 | 1 | 1 | 6.0 | 1.00 | 100% |" in text
    assert "| nodes-2 | 2 | 2 | 4.0 | 1.50 | 75% |" in text


def test_a_crashed_rank_is_reported_with_its_partial_figures(tmp_path):
    root = copy_run("crashed", tmp_path / "results")
    [run] = report.write_report(root)["runs"]
    assert run["complete"] is False
    # No rank finished its epoch, so there is no epoch time to compare.
    assert run["epoch_seconds"] is None and run["speedup"] is None
    survivor, lost = run["hosts"]["compute01"], run["hosts"]["compute02"]
    assert (survivor["iterations"], lost["iterations"]) == (4, 3)
    assert survivor["iterations_expected"] == 40 and survivor["epoch_seconds"] == []
    assert survivor["last_losses"] == {"loss_d": pytest.approx(1.08), "loss_g": pytest.approx(1.6)}
    assert any("missing iterations 3-39" in problem for problem in lost["problems"])
    assert any("no '[rank: 1] Epoch 0 took' line" in problem for problem in lost["problems"])
    text = (root / "report.md").read_text()
    assert "## Incomplete outputs" in text and "`compute02/output.txt`: rank 1 epoch 0" in text
    assert "| . | 2 | 2 | n/a |" in text and "| no |" in text


def test_loss_plot_draws_one_line_per_rank(tmp_path):
    one = copy_run("one-node", tmp_path / "one")
    two = copy_run("two-nodes", tmp_path / "two")
    report.write_report(one)
    report.write_report(two)
    for root in (one, two):
        height, width, _ = mpimage.imread(root / "losses.png").shape
        assert (width, height) == (800, 600)
    assert pixels_of(one / "losses.png", BLUE) > 200
    assert pixels_of(one / "losses.png", ORANGE) == 0
    assert pixels_of(two / "losses.png", BLUE) > 200
    assert pixels_of(two / "losses.png", ORANGE) > 200


def test_plot_counts_only_ranks_with_iterations(tmp_path):
    runs = report.read_runs(copy_run("crashed", tmp_path / "results"))
    assert report.plot_losses(runs, tmp_path / "plot.png") == 2
    assert pixels_of(tmp_path / "plot.png", ORANGE) > 100


def test_sample_images_are_listed_and_shown(tmp_path):
    root = copy_run("two-nodes", tmp_path / "results")
    sample = root / "compute02" / "fake_samples_epoch_000_rank_1.png"
    shutil.copy(FIXTURES.parent / "report-sample.png", sample)
    [run] = report.write_report(root)["runs"]
    assert run["hosts"]["compute02"]["images"] == ["compute02/fake_samples_epoch_000_rank_1.png"]
    assert run["hosts"]["compute01"]["images"] == []
    assert "![compute02: fake_samples_epoch_000_rank_1](compute02/fake_samples_epoch_000_rank_1.png)" in (
        root / "report.md"
    ).read_text()


def test_non_finite_losses_still_make_valid_json(tmp_path):
    root = copy_run("one-node", tmp_path / "results")
    path = root / "compute01" / "output.txt"
    path.write_text(path.read_text().replace("Loss_D: 0.7310", "Loss_D: nan"))
    report.write_report(root)
    [run] = strict_json(root / "report.json")["runs"]
    assert run["hosts"]["compute01"]["last_losses"] == {"loss_d": None, "loss_g": 2.6021}
    assert any("non-finite" in problem for problem in run["hosts"]["compute01"]["problems"])


def test_folder_without_runs_is_one_line_naming_it(tmp_path, capsys):
    (tmp_path / "compute01").mkdir()
    assert cli.main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert str(tmp_path) in err and "holds no <host>/output.txt" in err
    assert not (tmp_path / "report.json").exists()


def test_missing_folder_is_one_line(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nowhere: no such folder" in err


def test_malformed_output_is_one_line_naming_the_file(tmp_path, capsys):
    root = copy_run("two-nodes", tmp_path / "results")
    bad = root / "compute02" / "output.txt"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not the app's output\n")
    assert cli.main(["report", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert str(bad) in err and "not an output of dist_dcgan.py" in err
    assert not (root / "report.md").exists()


def test_cli_prints_a_summary_and_writes_the_three_files(tmp_path, capsys):
    root = tmp_path / "results"
    copy_run("one-node", root / "nodes-1")
    copy_run("two-nodes", root / "nodes-2")
    assert cli.main(["report", str(root)]) == 0
    out = capsys.readouterr().out
    assert "nodes-2: 2 node(s), world size 2, epoch 4.0 s, speedup 1.50, efficiency 75%" in out
    assert {path.name for path in root.iterdir()} >= {"report.json", "report.md", "losses.png"}


def test_hosts_left_by_a_run_of_another_size_are_a_separate_run(tmp_path):
    root = copy_run("two-nodes", tmp_path / "results")
    shutil.rmtree(root / "compute01")
    shutil.copytree(FIXTURES / "one-node" / "compute01", root / "compute01")
    runs = report.write_report(root)["runs"]
    assert [(run["folder"], run["nodes"], run["world_size"]) for run in runs] == [
        (". (world size 1)", 1, 1),
        (". (world size 2)", 1, 2),
    ]
    assert runs[0]["complete"] and not runs[1]["complete"]
