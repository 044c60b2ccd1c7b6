"""The preflight compares the project's VMs in moto with the spec."""

from __future__ import annotations

import pytest
from moto_cloud import KEYPAIR, describe

from dcgan_harness import aws


def run_preflight(cloud) -> list[str]:
    settings = aws.read_settings(cloud.env)
    spec = aws.InstanceSpec(keypair_name=settings.keypair_name)
    return aws.preflight(aws.ec2_client(settings), settings, spec, run=aws.DEFAULT_RUN)


def test_vm_to_the_spec_passes(cloud):
    cloud.launch()
    assert run_preflight(cloud) == []


def test_wrong_instance_type_is_flagged(cloud):
    instance = cloud.launch(InstanceType="t2.micro")
    assert run_preflight(cloud) == [f"{instance['InstanceId']}: instance type is t2.micro, expected t2.medium"]


def test_cli_preflight_exits_1_and_names_the_difference(cloud):
    cloud.launch(InstanceType="t2.micro")
    result = cloud.aws_cli("preflight")
    assert result.returncode == 1, describe(result)
    assert "instance type is t2.micro, expected t2.medium" in result.stdout


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"ImageId": "ami-0123456789abcdef0"}, "image is ami-0123456789abcdef0, expected ami-0c4f7023847b90238"),
        (
            {"BlockDeviceMappings": [{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 8}}]},
            "root volume is 8 GB, expected 16 GB",
        ),
        ({"KeyName": "someone-else"}, f"key pair is someone-else, expected {KEYPAIR} (KEYPAIR_NAME)"),
    ],
)
def test_other_differences_are_flagged(cloud, overrides, expected):
    if overrides.get("KeyName"):
        cloud.ec2().create_key_pair(KeyName=overrides["KeyName"])
    instance = cloud.launch(**overrides)
    assert run_preflight(cloud) == [f"{instance['InstanceId']}: {expected}"]


def test_stopped_vm_is_flagged_with_its_name(cloud):
    instance = cloud.launch()
    ec2 = cloud.ec2()
    ec2.create_tags(Resources=[instance["InstanceId"]], Tags=[{"Key": "Name", "Value": "compute01"}])
    ec2.stop_instances(InstanceIds=[instance["InstanceId"]])
    assert run_preflight(cloud) == [
        f"compute01 ({instance['InstanceId']}): is stopped, not running: start it or rerun provision.yaml"
    ]


def test_untagged_vms_are_none_of_its_business(cloud):
    cloud.launch(tagged=False, InstanceType="t2.micro")
    cloud.launch()
    assert run_preflight(cloud) == []


def test_no_vm_at_all_is_a_warning(cloud):
    (warning,) = run_preflight(cloud)
    assert warning.startswith("no VM tagged Project=dcgan-harness, Run=dcgan in eu-west-1")
