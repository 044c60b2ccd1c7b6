"""dcgan_harness.aws: the settings check on its own, without Ansible."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from moto_cloud import KEYPAIR, REGION, REPO_ROOT, SECRET, describe

from dcgan_harness import aws

GOOD_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
    "AWS_SECRET_ACCESS_KEY": SECRET,
    "AWS_REGION": "us-east-1",
    "KEYPAIR_NAME": "my-laptop",
}


@pytest.mark.parametrize("name", aws.REQUIRED_SETTINGS)
@pytest.mark.parametrize("value", [None, "", "   "])
def test_missing_setting_is_named(name, value):
    env = {key: val for key, val in GOOD_ENV.items() if key != name}
    if value is not None:
        env[name] = value
    with pytest.raises(aws.AwsSettingsError, match=rf"^{name} is not set"):
        aws.read_settings(env)


def example_exports() -> dict[str, str]:
    text = (REPO_ROOT / "vars.sh.example").read_text()
    return dict(re.findall(r'^export (\w+)="([^"]*)"', text, re.MULTILINE))


def test_example_file_exports_every_setting():
    assert set(aws.REQUIRED_SETTINGS) <= set(example_exports())


@pytest.mark.parametrize("name", ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "KEYPAIR_NAME"])
def test_placeholders_of_the_example_file_are_refused(name):
    env = dict(GOOD_ENV, **{name: example_exports()[name]})
    with pytest.raises(aws.AwsSettingsError, match=rf"^{name} still holds the placeholder") as raised:
        aws.read_settings(env)
    assert SECRET not in str(raised.value)


@pytest.mark.parametrize("value", ["AKIAIOSFODNN7EXAMPLE", "us-east-1", "my-laptop", "replacement-key", "wJalrXUtnF"])
def test_real_values_are_not_taken_for_placeholders(value):
    assert not aws.is_placeholder(value)


@pytest.mark.parametrize("value", ["REPLACE_ME", "replace-me-key", "REPLACE_WITH_VM_PUBLIC_IP", "<your key>"])
def test_placeholder_spellings(value):
    assert aws.is_placeholder(value)


def test_settings_keep_the_secret_out_of_their_repr():
    settings = aws.read_settings(GOOD_ENV)
    assert SECRET not in repr(settings)
    assert settings.endpoint_url is None


@pytest.mark.parametrize("variable", ["AWS_URL", "AWS_ENDPOINT_URL"])
def test_endpoint_comes_from_the_environment(variable):
    settings = aws.read_settings(dict(GOOD_ENV, **{variable: "http://127.0.0.1:5000"}))
    assert settings.endpoint_url == "http://127.0.0.1:5000"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o610])
def test_key_file_readable_by_others_is_refused(tmp_path: Path, mode):
    key = tmp_path / "key.pem"
    key.write_text("key\n")
    key.chmod(mode)
    with pytest.raises(aws.AwsSettingsError, match=rf"mode {mode:04o}.*run chmod 600 {re.escape(str(key))}$"):
        aws.check_key_file(key)


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_private_key_file_passes(tmp_path: Path, mode):
    key = tmp_path / "key.pem"
    key.write_text("key\n")
    key.chmod(mode)
    aws.check_key_file(key)


def test_missing_key_file_is_named(tmp_path: Path):
    with pytest.raises(aws.AwsSettingsError, match="key file .*key.pem not found"):
        aws.check_key_file(tmp_path / "key.pem")


def test_check_accepts_the_settings_of_a_ready_account(cloud):
    settings = aws.check_settings(cloud.env, cloud.key_file)
    assert (settings.region, settings.keypair_name) == (REGION, KEYPAIR)


def test_check_refuses_an_image_the_region_lacks(cloud):
    with pytest.raises(
        aws.AwsSettingsError, match=f"image ami-0000000000000000f does not exist in AWS_REGION {REGION}"
    ):
        aws.check_settings(cloud.env, cloud.key_file, image_id="ami-0000000000000000f")


def test_cli_check_succeeds_on_a_ready_account(cloud):
    result = cloud.aws_cli("check")
    assert result.returncode == 0, describe(result)
    assert f"region {REGION}" in result.stdout


def test_cli_reports_an_unreachable_endpoint_in_one_line(cloud):
    closed = "http://127.0.0.1:9"
    result = cloud.aws_cli("check", env=dict(cloud.env, AWS_URL=closed, AWS_ENDPOINT_URL=closed))
    assert result.returncode == 3, describe(result)
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_cli_usage_mistake_is_one_line_with_status_2(cloud):
    result = cloud.run(sys.executable, "-m", "dcgan_harness.aws", "launch")
    assert result.returncode == 2, describe(result)
    assert result.stderr.count("\n") == 1 and "invalid choice" in result.stderr
