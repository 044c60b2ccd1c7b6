"""provision.yaml against moto: what it creates, that a rerun creates nothing,
and that the dynamic inventory and the preflight see the result."""

from __future__ import annotations

import json

import pytest
from moto_cloud import BIN_DIR, KEYPAIR, REGION, SECRET, UBUNTU_AMI, describe, unwrap

SSH_CIDR = "203.0.113.0/24"


@pytest.fixture(scope="module")
def provisioned(module_cloud):
    # moto's VMs never answer SSH; the local connection Cloud.playbook uses
    # stands in for it, so the wait for the new hosts runs without network.
    result = module_cloud.playbook(
        "provision.yaml", "-e", f"ssh_cidr={SSH_CIDR}", "-e", "wait_for_ssh=true", "-e", "ssh_wait_timeout=60"
    )
    assert result.returncode == 0, describe(result)
    return module_cloud, result


@pytest.fixture(scope="module")
def instance(provisioned):
    cloud, _ = provisioned
    instances = cloud.project_instances()
    assert len(instances) == 1, instances
    return instances[0]


def tags_of(resource: dict) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in resource.get("Tags", [])}


def test_provision_launches_one_vm_to_the_spec(instance):
    assert instance["State"]["Name"] == "running"
    assert instance["InstanceType"] == "t2.medium"
    assert instance["ImageId"] == UBUNTU_AMI
    assert instance["KeyName"] == KEYPAIR
    assert instance["Placement"]["AvailabilityZone"].startswith(REGION)


def test_root_volume_is_16_gb_at_sda1_and_dies_with_the_vm(provisioned, instance):
    cloud, _ = provisioned
    assert instance["RootDeviceName"] == "/dev/sda1"
    (mapping,) = [m for m in instance["BlockDeviceMappings"] if m["DeviceName"] == "/dev/sda1"]
    assert mapping["Ebs"]["DeleteOnTermination"] is True
    (volume,) = cloud.ec2().describe_volumes(VolumeIds=[mapping["Ebs"]["VolumeId"]])["Volumes"]
    assert volume["Size"] == 16


def test_provision_waits_until_the_new_vm_answers(provisioned):
    _, result = provisioned
    wait_task = result.stdout.split("TASK [Wait for SSH and a working Python on the VM]", 1)[1]
    assert wait_task.split("\n\n", 1)[0].strip().endswith("ok: [compute01]"), describe(result)


def test_vm_carries_project_run_and_name_tags(instance):
    assert tags_of(instance) == {"Project": "dcgan-harness", "Run": "dcgan", "Name": "compute01"}


def test_security_group_opens_ssh_to_the_configured_cidr_only(provisioned, instance):
    cloud, _ = provisioned
    (group,) = [g for g in cloud.security_groups() if g["GroupName"] == "dcgan-harness-dcgan"]
    assert tags_of(group)["Project"] == "dcgan-harness"
    assert [g["GroupId"] for g in instance["SecurityGroups"]] == [group["GroupId"]]
    ssh_rules = [r for r in group["IpPermissions"] if r["IpProtocol"] == "tcp"]
    assert [(r["FromPort"], r["ToPort"], [ip["CidrIp"] for ip in r["IpRanges"]]) for r in ssh_rules] == [
        (22, 22, [SSH_CIDR])
    ]
    (internal,) = [r for r in group["IpPermissions"] if r["IpProtocol"] == "-1"]
    assert [pair["GroupId"] for pair in internal["UserIdGroupPairs"]] == [group["GroupId"]]
    assert internal["IpRanges"] == []


def test_nothing_lands_in_another_region(provisioned):
    cloud, _ = provisioned
    assert cloud.project_instances(region="us-east-1") == []


def test_second_provision_creates_nothing_and_never_shows_the_secret(provisioned, instance):
    cloud, first = provisioned
    # -vvv prints every module argument: the place a secret would leak.
    result = cloud.playbook("provision.yaml", "-e", f"ssh_cidr={SSH_CIDR}", "-vvv")
    assert result.returncode == 0, describe(result)
    assert "changed=0" in result.stdout, describe(result)
    assert [i["InstanceId"] for i in cloud.instances()] == [instance["InstanceId"]]
    for output in (first.stdout, first.stderr, result.stdout, result.stderr):
        assert SECRET not in output


def test_dynamic_inventory_lists_the_vm_in_group_cloud(provisioned, instance):
    cloud, _ = provisioned
    result = cloud.run(str(BIN_DIR / "ansible-inventory"), "-i", "inventory.aws_ec2.yaml", "--list")
    assert result.returncode == 0, describe(result)
    inventory = unwrap(json.loads(result.stdout))
    assert inventory["cloud"]["hosts"] == ["compute01"]
    hostvars = inventory["_meta"]["hostvars"]["compute01"]
    assert instance["PublicIpAddress"]
    assert hostvars["ansible_host"] == instance["PublicIpAddress"]
    assert hostvars["ansible_user"] == "ubuntu"
    assert hostvars["ansible_ssh_private_key_file"] == "key.pem"


def test_preflight_accepts_what_provision_made(provisioned):
    cloud, _ = provisioned
    result = cloud.aws_cli("preflight")
    assert result.returncode == 0, describe(result)
    assert "preflight OK" in result.stdout
