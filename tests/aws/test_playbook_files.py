"""The AWS playbooks and inventory as files: lint-clean, and agreeing with
each other and with dcgan_harness.aws on the spec and the tags."""

from __future__ import annotations

import yaml
from moto_cloud import BIN_DIR, REPO_ROOT, describe

from dcgan_harness import aws

AWS_YAML = ["provision.yaml", "teardown.yaml", "inventory.aws_ec2.yaml", "tasks/check_aws_settings.yaml"]


def load(name: str):
    return yaml.safe_load((REPO_ROOT / name).read_text())


def first_play_vars(name: str) -> dict:
    return load(name)[0]["vars"]


def run_tool(cloud, tool: str, *args: str):
    return cloud.run(str(BIN_DIR / tool), *args)


def test_yamllint_strict_passes(cloud):
    result = run_tool(cloud, "yamllint", "-s", *AWS_YAML)
    assert result.returncode == 0, describe(result)


def test_ansible_lint_production_profile_passes(cloud):
    result = run_tool(cloud, "ansible-lint", "--offline", "--profile", "production", "provision.yaml", "teardown.yaml")
    assert result.returncode == 0, describe(result)


def test_provision_spec_matches_the_preflight_spec():
    knobs = first_play_vars("provision.yaml")
    spec = aws.InstanceSpec(keypair_name="unused")
    assert knobs["instance_type"] == spec.instance_type
    assert knobs["image_id"] == spec.image_id
    assert knobs["root_device"] == spec.root_device
    assert knobs["root_volume_gb"] == spec.root_volume_gb


def test_every_file_finds_the_vms_by_the_same_tags():
    project_key, project = aws.PROJECT_TAG
    for name in ("provision.yaml", "teardown.yaml"):
        knobs = first_play_vars(name)
        assert knobs["project_tag"] == project, name
        assert knobs["run_name"] == first_play_vars("provision.yaml")["run_name"], name
        assert f"'{aws.RUN_ENV}'" in knobs["run_name"] and f"'{aws.DEFAULT_RUN}'" in knobs["run_name"], name
    inventory = load("inventory.aws_ec2.yaml")
    assert inventory["filters"][f"tag:{project_key}"] == project
    assert inventory["filters"][f"tag:{aws.RUN_TAG_KEY}"].strip() == first_play_vars("provision.yaml")["run_name"]


def test_provision_waits_for_ssh_unless_told_not_to():
    plays = load("provision.yaml")
    assert plays[0]["vars"]["wait_for_ssh"] is True
    (wait_play,) = [play for play in plays[1:] if play["hosts"] == "provisioned"]
    # One wait, whose failure is turned into the message that names host, user and key.
    (guarded,) = wait_play["tasks"]
    assert ["ansible.builtin.wait_for_connection" in task for task in guarded["block"]] == [True]
    assert ["ansible.builtin.fail" in task for task in guarded["rescue"]] == [True]
