"""Properties of this repository's own configure.yaml and inventory.yaml."""

from __future__ import annotations

import yaml

KNOBS = {
    "dcgan_repo_url", "dcgan_repo_version", "dcgan_work_dir", "dcgan_image_name", "dcgan_image_tag",
    "dcgan_epochs", "dcgan_batch_size", "dcgan_image_size", "dcgan_max_workers", "dcgan_extra_args",
    "dcgan_results_dir", "dcgan_build_async", "dcgan_build_poll", "dcgan_run_async", "dcgan_run_poll",
    "dcgan_fresh_run", "dcgan_mnist_dir", "dcgan_omp_threads",
}


def load(repo_root, name):
    return yaml.safe_load((repo_root / name).read_text())


def test_every_knob_is_a_play_variable_with_a_default(repo_root):
    play = load(repo_root, "configure.yaml")[0]
    missing = KNOBS - set(play["vars"])
    assert not missing, f"configure.yaml's vars block lacks {sorted(missing)}"
    assert play["hosts"] == "cloud"


def test_inventory_has_compute01_in_cloud_with_a_placeholder(repo_root):
    host = load(repo_root, "inventory.yaml")["cloud"]["hosts"]["compute01"]
    assert host["ansible_user"] == "ubuntu"
    assert "REPLACE_WITH" in host["ansible_host"]


def test_placeholder_address_fails_at_once_with_a_clear_message(tool, repo_root):
    result = tool("ansible-playbook", "-i", "inventory.yaml", "configure.yaml", cwd=repo_root, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "set ansible_host in inventory.yaml to the public IP or DNS name of your VM" in output
    assert "UNREACHABLE" not in output
    assert "ok=0" in output
