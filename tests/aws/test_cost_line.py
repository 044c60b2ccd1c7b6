"""The line provision.yaml prints after the launch: what the run's VMs cost
per hour at the price it documents, when they end themselves, and how to end
them sooner."""

from __future__ import annotations

import json
import re
from itertools import takewhile

import pytest
import yaml
from moto_cloud import REPO_ROOT, describe

COST_TASK = "TASK [Say what the VMs of this run cost per hour and when they end]"
# The price provision.yaml documents (t2.medium, Linux, us-east-1), as the line
# writes it; the tests run in eu-west-1, whose price differs.
PRICE = "(on-demand, us-east-1, price of 2026-12-01; eu-west-1 differs a little)"


def cost_line(result) -> str:
    assert COST_TASK in result.stdout, describe(result)
    task = result.stdout.split(COST_TASK, 1)[1].split("\n\n", 1)[0]
    found = re.search(r'"msg": ("(?:[^"\\]|\\.)*")', task)
    assert found, describe(result)
    return json.loads(found.group(1))


@pytest.fixture(scope="module")
def runs(module_cloud):
    """provision.yaml run three times on one account: 1 VM, the same again, then 3 VMs."""
    results = []
    for count in (1, 1, 3):
        result = module_cloud.playbook("provision.yaml", "-e", f"instance_count={count}")
        assert result.returncode == 0, describe(result)
        results.append(result)
    return results


def test_a_launch_prints_its_cost_per_hour_and_how_it_ends(runs):
    assert cost_line(runs[0]) == (
        f"started 1 t2.medium: about US$0.05 per hour {PRICE}; it terminates itself after 4 h;"
        " make aws-down ends it now"
    )


def test_a_rerun_that_starts_nothing_prints_what_keeps_running(runs):
    assert cost_line(runs[1]) == (
        f"none started, 1 t2.medium already running: about US$0.05 per hour {PRICE};"
        " each ends itself max_hours after it started; make aws-down ends it now"
    )


def test_the_cost_counts_every_running_vm_of_the_run(runs):
    assert cost_line(runs[2]) == (
        f"started 2 t2.medium, 3 running in all: about US$0.14 per hour {PRICE};"
        " they terminate themselves after 4 h; make aws-down ends them now"
    )


# Slow (a provisioning of its own): pytest -m slow tests/aws.
@pytest.mark.slow
def test_another_instance_type_says_its_price_is_unknown(module_cloud):
    env = dict(module_cloud.env, DCGAN_RUN="other-type")
    result = module_cloud.playbook("provision.yaml", "-e", "instance_type=t3.micro", "-e", "max_hours=2", env=env)
    assert result.returncode == 0, describe(result)
    assert cost_line(result) == (
        "started 1 t3.micro: cost per hour unknown: on_demand_usd_per_hour has no price for t3.micro,"
        " see https://aws.amazon.com/ec2/pricing/on-demand/; it terminates itself after 2 h;"
        " make aws-down ends it now"
    )


def test_the_price_is_one_documented_constant_with_its_date_and_source():
    text = (REPO_ROOT / "provision.yaml").read_text()
    knobs = yaml.safe_load(text)[0]["vars"]
    assert knobs["on_demand_usd_per_hour"] == {"t2.medium": 0.0464}
    assert (knobs["on_demand_price_region"], knobs["on_demand_price_date"]) == ("us-east-1", "2026-12-01")
    above = text.split("\n    on_demand_usd_per_hour:", 1)[0].splitlines()
    comment = " ".join(line.strip(" #") for line in takewhile(lambda line: line.strip().startswith("#"), above[::-1]))
    assert "EC2 on-demand" in comment and "https://aws.amazon.com/ec2/pricing/on-demand/" in comment, comment
