"""Wrong settings stop provision.yaml and teardown.yaml with a message naming
the setting, before a single AWS resource is created."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from moto_cloud import REGION, REPO_ROOT, SECRET, describe


def example_value(name: str) -> str:
    """The value vars.sh.example gives a setting, so the test follows the file."""
    text = (REPO_ROOT / "vars.sh.example").read_text()
    match = re.search(rf'^export {name}="([^"]*)"', text, re.MULTILINE)
    assert match, f"vars.sh.example has no export line for {name}"
    return match.group(1)


def assert_nothing_created(cloud) -> None:
    for region in (REGION, "us-east-1"):
        assert cloud.instances(region=region, live=False) == [], region
        assert [g["GroupName"] for g in cloud.security_groups(region)] == ["default"], region


def without(env: dict[str, str], name: str) -> dict[str, str]:
    return {key: value for key, value in env.items() if key != name}


BAD_SETTINGS = {
    "missing access key": (lambda env: without(env, "AWS_ACCESS_KEY_ID"), "AWS_ACCESS_KEY_ID is not set"),
    "missing secret key": (lambda env: without(env, "AWS_SECRET_ACCESS_KEY"), "AWS_SECRET_ACCESS_KEY is not set"),
    "missing region": (lambda env: dict(env, AWS_REGION=""), "AWS_REGION is not set"),
    "unknown region": (lambda env: dict(env, AWS_REGION="mars-north-1"), "AWS_REGION 'mars-north-1' is not a region"),
    "unknown key pair": (
        lambda env: dict(env, KEYPAIR_NAME="nobody-key"),
        "KEYPAIR_NAME 'nobody-key' is not a key pair",
    ),
    "placeholder left in vars.sh": (
        lambda env: dict(env, KEYPAIR_NAME=example_value("KEYPAIR_NAME")),
        "KEYPAIR_NAME still holds the placeholder",
    ),
}


def failure_text(result) -> str:
    return result.stdout + result.stderr


@pytest.mark.parametrize(
    "case", ["missing secret key", "unknown region", "unknown key pair", "placeholder left in vars.sh"]
)
def test_provision_refuses_bad_settings_before_creating_anything(cloud, case):
    spoil, message = BAD_SETTINGS[case]
    result = cloud.playbook("provision.yaml", env=spoil(cloud.env))
    assert result.returncode != 0, describe(result)
    assert message in failure_text(result), describe(result)
    assert SECRET not in failure_text(result)
    assert_nothing_created(cloud)


def test_provision_refuses_a_key_file_others_can_read(cloud, tmp_path: Path):
    loose_key = tmp_path / "loose.pem"
    loose_key.write_text("key\n")
    loose_key.chmod(0o644)
    result = cloud.playbook("provision.yaml", "-e", f"ssh_key_file={loose_key}")
    assert result.returncode != 0, describe(result)
    assert f"chmod 600 {loose_key}" in failure_text(result), describe(result)
    assert_nothing_created(cloud)


def test_provision_that_must_log_in_wants_the_key_file(cloud, tmp_path: Path):
    missing = tmp_path / "absent.pem"
    result = cloud.playbook("provision.yaml", "-e", f"ssh_key_file={missing}", "-e", "wait_for_ssh=true")
    assert result.returncode != 0, describe(result)
    assert f"key file {missing} not found" in failure_text(result), describe(result)
    assert_nothing_created(cloud)


def test_teardown_refuses_missing_credentials(cloud):
    result = cloud.playbook("teardown.yaml", env=without(cloud.env, "AWS_ACCESS_KEY_ID"))
    assert result.returncode != 0, describe(result)
    assert "AWS_ACCESS_KEY_ID is not set" in failure_text(result), describe(result)


@pytest.mark.parametrize("case", sorted(BAD_SETTINGS))
def test_aws_check_names_the_setting_in_one_line(cloud, case):
    spoil, message = BAD_SETTINGS[case]
    result = cloud.aws_cli("check", env=spoil(cloud.env))
    assert result.returncode == 2, describe(result)
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), describe(result)
    assert message in result.stderr
    assert "Traceback" not in result.stderr and SECRET not in result.stderr
    assert_nothing_created(cloud)
