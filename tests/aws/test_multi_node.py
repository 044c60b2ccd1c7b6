"""provision.yaml with instance_count=2 against moto: the VMs of one training
job share the project's security group, which lets its members reach each other
on the rendezvous port and gloo's ephemeral ports, and opens nothing but SSH to
the internet."""

from __future__ import annotations

import json

import pytest
from moto_cloud import BIN_DIR, describe, unwrap

GROUP_NAME = "dcgan-harness-dcgan"
# configure.yaml's dcgan_master_port, and a port from Linux's ephemeral range,
# where gloo's pairs listen.
MASTER_PORT = 29500
GLOO_PORT = 45123
ANYWHERE = {"0.0.0.0/0", "::/0"}


@pytest.fixture(scope="module")
def two_vms(module_cloud):
    # ssh_cidr left at its default, 0.0.0.0/0: the widest the playbook opens.
    result = module_cloud.playbook("provision.yaml", "-e", "instance_count=2")
    assert result.returncode == 0, describe(result)
    return module_cloud


@pytest.fixture(scope="module")
def group(two_vms):
    (group,) = [g for g in two_vms.security_groups() if g["GroupName"] == GROUP_NAME]
    return group


def covers(rule: dict, protocol: str, port: int) -> bool:
    if rule["IpProtocol"] == "-1":
        return True
    return rule["IpProtocol"] == protocol and rule["FromPort"] <= port <= rule["ToPort"]


def test_both_vms_run_in_the_project_group(two_vms, group):
    instances = two_vms.project_instances()
    names = sorted(tag["Value"] for i in instances for tag in i["Tags"] if tag["Key"] == "Name")
    assert names == ["compute01", "compute02"]
    for instance in instances:
        assert [g["GroupId"] for g in instance["SecurityGroups"]] == [group["GroupId"]]
        assert instance["PrivateIpAddress"]


@pytest.mark.parametrize("port", [MASTER_PORT, GLOO_PORT])
def test_members_reach_each_other_on_the_training_ports(group, port):
    from_members = [
        rule
        for rule in group["IpPermissions"]
        if [pair["GroupId"] for pair in rule.get("UserIdGroupPairs", [])] == [group["GroupId"]]
    ]
    assert any(covers(rule, "tcp", port) for rule in from_members), group["IpPermissions"]
    # The rule names the group itself, not an address range.
    assert all(rule["IpRanges"] == [] and rule.get("Ipv6Ranges", []) == [] for rule in from_members)


def test_nothing_but_ssh_is_open_to_the_internet(group):
    open_rules = [
        rule
        for rule in group["IpPermissions"]
        if {r["CidrIp"] for r in rule["IpRanges"]} & ANYWHERE
        or {r["CidrIpv6"] for r in rule.get("Ipv6Ranges", [])} & ANYWHERE
    ]
    assert [(r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in open_rules] == [("tcp", 22, 22)]
    for port in (MASTER_PORT, GLOO_PORT):
        assert not any(covers(rule, "tcp", port) for rule in open_rules)


def test_dynamic_inventory_puts_both_vms_in_cloud(two_vms):
    result = two_vms.run(str(BIN_DIR / "ansible-inventory"), "-i", "inventory.aws_ec2.yaml", "--list")
    assert result.returncode == 0, describe(result)
    inventory = unwrap(json.loads(result.stdout))
    assert sorted(inventory["cloud"]["hosts"]) == ["compute01", "compute02"]
