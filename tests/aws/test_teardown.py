"""teardown.yaml removes exactly what provision.yaml made."""

from __future__ import annotations

from moto_cloud import describe


def test_teardown_removes_the_run_and_spares_everything_else(cloud):
    provisioned = cloud.playbook("provision.yaml", "-e", "instance_count=2")
    assert provisioned.returncode == 0, describe(provisioned)
    names = sorted(tag["Value"] for i in cloud.project_instances() for tag in i["Tags"] if tag["Key"] == "Name")
    assert names == ["compute01", "compute02"]

    bystander = cloud.launch(tagged=False)
    other_run = cloud.launch(
        TagSpecifications=[
            {
                "ResourceType": "instance",
                "Tags": [{"Key": "Project", "Value": "dcgan-harness"}, {"Key": "Run", "Value": "other"}],
            }
        ]
    )
    ec2 = cloud.ec2()
    other_vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    # The project's group name in another VPC, but without the tags: not ours.
    ec2.create_security_group(GroupName="dcgan-harness-dcgan", Description="someone else's", VpcId=other_vpc)

    result = cloud.playbook("teardown.yaml")
    assert result.returncode == 0, describe(result)
    assert cloud.project_instances() == []
    survivors = {i["InstanceId"] for i in cloud.instances()}
    assert survivors == {bystander["InstanceId"], other_run["InstanceId"]}
    groups = [(g["GroupName"], g["VpcId"]) for g in cloud.security_groups() if g["GroupName"] != "default"]
    assert groups == [("dcgan-harness-dcgan", other_vpc)]

    again = cloud.playbook("teardown.yaml")
    assert again.returncode == 0, describe(again)
    assert "changed=0" in again.stdout, describe(again)
