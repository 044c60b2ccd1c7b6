"""The benchmark's bare equivalents do what configure.yaml does, and its ratios read right."""

from __future__ import annotations

import jinja2
import yaml

from dcgan_harness import bench, bench_floor
from dcgan_harness.localrun import FAST_EXTRA_ARGS
from dcgan_harness.playbook_run import phase_of


def play_vars(repo_root) -> dict:
    return yaml.safe_load((repo_root / "configure.yaml").read_text())[0]["vars"]


def test_bare_install_installs_the_playbooks_packages(repo_root):
    assert tuple(play_vars(repo_root)["dcgan_packages"]) == bench_floor.PACKAGES
    install = next(f for f in bench_floor.floors(128, FAST_EXTRA_ARGS) if f.phase == "install")
    assert install.command.endswith("install -y -q docker.io python3-docker git")


def test_bare_training_runs_the_playbooks_command_line(repo_root):
    variables = {**play_vars(repo_root), "dcgan_extra_args": FAST_EXTRA_ARGS, "dcgan_batch_size": 128}
    rendered = jinja2.Template(variables["dcgan_app_args"]).render(**variables)
    assert bench_floor.app_args(128, FAST_EXTRA_ARGS).split() == rendered.split()
    train = next(f for f in bench_floor.floors(128, FAST_EXTRA_ARGS) if f.phase == "train")
    assert f"{bench_floor.APP_IMAGE} python dist_dcgan.py {rendered.strip()}" in " ".join(train.command.split())


def test_floors_run_in_an_order_that_leaves_each_its_starting_point():
    phases = [f.phase for f in bench_floor.floors(128, "")]
    assert phases == ["install", "pull", "build", "train"]
    pull, build = bench_floor.floors(128, "")[1:3]
    # The build starts without the runtime image, so its FROM pulls it as the playbook's build did.
    assert bench_floor.RUNTIME_IMAGE in pull.undo and bench_floor.RUNTIME_IMAGE in build.undo


def test_ratios_divide_each_phase_by_its_floor_and_the_runs():
    phases = {"install": 23.0, "build": 20.0, "train": 6.3, "clone": 2.0}
    floor = {"install": 20.0, "pull": 9.0, "build": 16.0, "train": 6.0}
    result = bench.ratios(phases, floor, first_total=50.0, second_total=6.0)
    assert result == {"install": 1.15, "build": 1.25, "train": 1.05, "second_run": 0.12}


def test_table_shows_playbook_bare_and_ratio_side_by_side():
    report = {
        "phases_s": {"install": 23.0, "build": 20.0, "train": 6.3},
        "fast_run_total_s": 70.0, "total_without_train_s": 63.7, "second_run_s": 5.0,
        "second_run_changed_tasks": [], "vm_image": "bookworm",
        "floor_s": {"install": 20.0, "pull": 9.0, "build": 16.0, "train": 6.0},
        "cpu_model": "Test CPU", "load_average": [1.5, 2.5], "runtime_image_gb": 1.17, "runtime_image_layers": 4,
    }
    report["ratios"] = bench.ratios(report["phases_s"], report["floor_s"], 70.0, 5.0)
    table = bench.format_table(report)
    install = next(line for line in table.splitlines() if line.startswith("install"))
    assert install.split()[:4] == ["install", "23.0", "20.0", "1.15x"] and install.endswith("met")
    build = next(line for line in table.splitlines() if line.startswith("build"))
    assert build.endswith("NOT met")
    assert "7% of the first run" in table and "Test CPU" in table and "load average 1.5" in table
    assert "fast run, total" in table and "target <= 60 s  NOT met" in table
    assert "1.17 GB unpacked, 4 layers" in table


def test_install_phase_holds_the_install_tasks_and_no_connection_setup(repo_root):
    tasks = yaml.safe_load((repo_root / "configure.yaml").read_text())[0]["tasks"]
    names = [task["name"] for task in tasks]
    names += [inner["name"] for task in tasks for part in ("block", "always") for inner in task.get(part, [])]
    phases = {name: phase_of(name) for name in names}
    assert phases["Wait until the VM answers over SSH"] == "connect"
    install = {name for name, phase in phases.items() if phase == "install"}
    assert any("apt" in name for name in install)
    assert not any("SSH" in name or "facts" in name for name in install), install
