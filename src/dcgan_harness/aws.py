"""Check the AWS settings from vars.sh and compare the project's VMs with the spec.

    python -m dcgan_harness.aws check       # settings only, before provision.yaml
    python -m dcgan_harness.aws preflight   # settings, then the VMs, before configure.yaml

Exit status: 0 all good, 1 preflight found VMs that differ from the spec,
2 a setting needs fixing (the one-line message names it), 3 AWS could not be
asked. Set AWS_URL (or AWS_ENDPOINT_URL) to aim at another endpoint, such as
a moto server in the tests.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from .errors import HarnessError
from .keys import too_open_mode

REQUIRED_SETTINGS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "KEYPAIR_NAME")
# Same rule as the placeholder check in tasks/check_aws_settings.yaml.
PLACEHOLDER_PATTERN = re.compile(r"replace[_-]?(me|with)(?![a-z0-9])|^<.*>$", re.IGNORECASE)

# provision.yaml tags every VM with these; teardown.yaml and the inventory
# find them the same way.
PROJECT_TAG = ("Project", "dcgan-harness")
RUN_TAG_KEY = "Run"
RUN_ENV = "DCGAN_RUN"
DEFAULT_RUN = "dcgan"

# A misspelt region has no endpoint, so the list of regions is asked here.
REGION_LOOKUP_REGION = "us-east-1"
AUTH_ERROR_CODES = frozenset(
    {"AuthFailure", "InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch"}
)
LIVE_STATES = ("pending", "running", "stopping", "stopped", "shutting-down")

EXIT_OK, EXIT_DIFFERS, EXIT_BAD_SETTING, EXIT_AWS_FAILED = 0, 1, 2, 3


class AwsSettingsError(HarnessError):
    """A setting the user has to fix; the message is one line naming it."""


class AwsCallError(HarnessError):
    """AWS could not answer (endpoint unreachable, throttled, ...)."""


@dataclass(frozen=True)
class AwsSettings:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    region: str
    keypair_name: str
    endpoint_url: str | None = None


@dataclass(frozen=True)
class InstanceSpec:
    """What provision.yaml launches; keep the defaults in step with its vars."""

    keypair_name: str
    instance_type: str = "t2.medium"
    image_id: str = "ami-0c4f7023847b90238"
    root_device: str = "/dev/sda1"
    root_volume_gb: int = 16


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def is_placeholder(value: str) -> bool:
    return bool(PLACEHOLDER_PATTERN.search(value))


def read_settings(environ: Mapping[str, str]) -> AwsSettings:
    """The vars.sh settings, refusing missing ones and leftover placeholders."""
    for name in REQUIRED_SETTINGS:
        if not environ.get(name, "").strip():
            raise AwsSettingsError(
                f"{name} is not set: copy vars.sh.example to vars.sh, fill it in and run `source vars.sh`"
            )
    for name in REQUIRED_SETTINGS:
        if is_placeholder(environ[name]):
            raise AwsSettingsError(
                f"{name} still holds the placeholder from vars.sh.example: put your real value in vars.sh"
                " and run `source vars.sh` again"
            )
    return AwsSettings(
        access_key_id=environ["AWS_ACCESS_KEY_ID"].strip(),
        secret_access_key=environ["AWS_SECRET_ACCESS_KEY"].strip(),
        region=environ["AWS_REGION"].strip(),
        keypair_name=environ["KEYPAIR_NAME"].strip(),
        endpoint_url=environ.get("AWS_URL") or environ.get("AWS_ENDPOINT_URL") or None,
    )


def run_name(environ: Mapping[str, str]) -> str:
    return environ.get(RUN_ENV, "").strip() or DEFAULT_RUN


def check_key_file(path: Path) -> None:
    """ssh ignores a private key that anyone but its owner may read."""
    if not path.is_file():
        raise AwsSettingsError(f"key file {path} not found: save the private key of KEYPAIR_NAME there")
    mode = too_open_mode(path)
    if mode is not None:
        raise AwsSettingsError(
            f"key file {path} has mode {mode:04o}, which ssh rejects as too open: run chmod 600 {path}"
        )


def ec2_client(settings: AwsSettings, region: str | None = None):
    try:
        return boto3.client(
            "ec2",
            region_name=region or settings.region,
            endpoint_url=settings.endpoint_url,
            aws_access_key_id=settings.access_key_id,
            aws_secret_access_key=settings.secret_access_key,
        )
    except ValueError as error:
        raise AwsSettingsError(
            f"AWS_URL/AWS_ENDPOINT_URL {settings.endpoint_url!r} is not a usable endpoint ({error}); "
            "unset it to reach AWS itself"
        ) from None


@contextmanager
def aws_errors(what: str) -> Iterator[None]:
    """Turn botocore's errors inside the block into the project's."""
    try:
        yield
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in AUTH_ERROR_CODES:
            raise AwsSettingsError(
                f"AWS did not accept AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY ({code}): check them in vars.sh"
            ) from None
        raise AwsCallError(one_line(f"{what} failed: {error}")) from None
    except (BotoCoreError, ResponseParserError) as error:
        raise AwsCallError(one_line(f"{what} failed: {error}")) from None


def check_region(settings: AwsSettings) -> None:
    client = ec2_client(settings, region=REGION_LOOKUP_REGION)
    with aws_errors("listing the regions"):
        regions = {region["RegionName"] for region in client.describe_regions()["Regions"]}
    if settings.region not in regions:
        raise AwsSettingsError(
            f"AWS_REGION '{settings.region}' is not a region this account can use: set it in vars.sh to one"
            " such as us-east-1"
        )


def check_keypair(client, settings: AwsSettings) -> None:
    with aws_errors("looking up the key pair"):
        found = client.describe_key_pairs(Filters=[{"Name": "key-name", "Values": [settings.keypair_name]}])["KeyPairs"]
    if not found:
        raise AwsSettingsError(
            f"KEYPAIR_NAME '{settings.keypair_name}' is not a key pair in region {settings.region}: create or"
            " import it (EC2 console > Key pairs) or fix vars.sh"
        )


def check_image(client, settings: AwsSettings, image_id: str) -> None:
    """AMI ids are per region, so this is where a wrong AWS_REGION shows."""
    with aws_errors("looking up the machine image"):
        found = client.describe_images(Filters=[{"Name": "image-id", "Values": [image_id]}])["Images"]
    if not found:
        raise AwsSettingsError(
            f"image {image_id} does not exist in AWS_REGION {settings.region}: use the region it was published"
            " in (us-east-1 for the default) or give the Ubuntu 20.04 AMI of your region (--image-id here,"
            " -e image_id=... to provision.yaml)"
        )


def check_settings(environ: Mapping[str, str], key_file: Path, image_id: str = InstanceSpec.image_id) -> AwsSettings:
    """Everything provision.yaml needs, cheapest checks first."""
    settings = read_settings(environ)
    check_key_file(key_file)
    check_region(settings)
    client = ec2_client(settings)
    check_keypair(client, settings)
    check_image(client, settings, image_id)
    return settings


def find_project_instances(client, run: str) -> list[dict]:
    """The project's VMs of one run that are not terminated, oldest first."""
    filters = [
        {"Name": f"tag:{PROJECT_TAG[0]}", "Values": [PROJECT_TAG[1]]},
        {"Name": f"tag:{RUN_TAG_KEY}", "Values": [run]},
        {"Name": "instance-state-name", "Values": list(LIVE_STATES)},
    ]
    instances = []
    with aws_errors("listing the VMs"):
        for page in client.get_paginator("describe_instances").paginate(Filters=filters):
            for reservation in page["Reservations"]:
                instances.extend(reservation["Instances"])
    return sorted(instances, key=lambda instance: (instance["LaunchTime"], instance["InstanceId"]))


def root_volume_id(instance: dict) -> str | None:
    for mapping in instance.get("BlockDeviceMappings", []):
        if mapping.get("DeviceName") == instance.get("RootDeviceName") and "Ebs" in mapping:
            return mapping["Ebs"]["VolumeId"]
    return None


def volume_sizes(client, volume_ids: Sequence[str]) -> dict[str, int]:
    if not volume_ids:
        return {}
    with aws_errors("looking up the root volumes"):
        volumes = client.describe_volumes(VolumeIds=list(volume_ids))
    return {volume["VolumeId"]: volume["Size"] for volume in volumes["Volumes"]}


def instance_label(instance: dict) -> str:
    tags = {tag["Key"]: tag["Value"] for tag in instance.get("Tags", [])}
    name = tags.get("Name")
    return f"{name} ({instance['InstanceId']})" if name else instance["InstanceId"]


def instance_warnings(instance: dict, spec: InstanceSpec, root_volume_gb: int | None) -> list[str]:
    """One line per way the VM differs from the spec or cannot be used."""
    label = instance_label(instance)
    found = []
    state = instance["State"]["Name"]
    if state != "running":
        found.append(f"is {state}, not running: start it or rerun provision.yaml")
    if instance.get("InstanceType") != spec.instance_type:
        found.append(f"instance type is {instance.get('InstanceType')}, expected {spec.instance_type}")
    if instance.get("ImageId") != spec.image_id:
        found.append(f"image is {instance.get('ImageId')}, expected {spec.image_id}")
    if instance.get("RootDeviceName") != spec.root_device:
        found.append(f"root device is {instance.get('RootDeviceName')}, expected {spec.root_device}")
    if root_volume_gb is None:
        found.append(f"has no EBS root volume, expected {spec.root_volume_gb} GB")
    elif root_volume_gb != spec.root_volume_gb:
        found.append(f"root volume is {root_volume_gb} GB, expected {spec.root_volume_gb} GB")
    if instance.get("KeyName") != spec.keypair_name:
        found.append(f"key pair is {instance.get('KeyName') or 'none'}, expected {spec.keypair_name} (KEYPAIR_NAME)")
    if state == "running" and not (instance.get("PublicIpAddress") or instance.get("PublicDnsName")):
        found.append("has no public address, so Ansible cannot reach it")
    return [f"{label}: {warning}" for warning in found]


def preflight(client, settings: AwsSettings, spec: InstanceSpec, run: str) -> list[str]:
    """Warnings about the run's VMs; an empty list means configure.yaml can go."""
    instances = find_project_instances(client, run)
    if not instances:
        return [
            f"no VM tagged {PROJECT_TAG[0]}={PROJECT_TAG[1]}, {RUN_TAG_KEY}={run} in {settings.region}:"
            " run provision.yaml first"
        ]
    sizes = volume_sizes(client, [vid for vid in map(root_volume_id, instances) if vid])
    warnings = []
    for instance in instances:
        warnings.extend(instance_warnings(instance, spec, sizes.get(root_volume_id(instance) or "")))
    return warnings


class OneLineParser(argparse.ArgumentParser):
    """Usage mistakes get the same one-line form as every other error."""

    def error(self, message: str):
        self.exit(EXIT_BAD_SETTING, f"error: {message} (see --help)\n")


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = OneLineParser(prog=prog or "python -m dcgan_harness.aws", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("check", "preflight"), help="check: settings; preflight: also the VMs")
    parser.add_argument("--key-file", type=Path, default=Path("key.pem"), help="private key (default: key.pem)")
    parser.add_argument("--image-id", default=InstanceSpec.image_id, help="AMI given to provision.yaml")
    parser.add_argument("--run", help=f"Run tag of the VMs (default: ${RUN_ENV} or {DEFAULT_RUN})")
    return parser


def run_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    settings = check_settings(environ, args.key_file, args.image_id)
    if args.command == "check":
        print(f"AWS settings OK: region {settings.region}, key pair {settings.keypair_name}, image {args.image_id}")
        return EXIT_OK
    run = args.run or run_name(environ)
    spec = InstanceSpec(keypair_name=settings.keypair_name, image_id=args.image_id)
    warnings = preflight(ec2_client(settings), settings, spec, run)
    for warning in warnings:
        print(f"warning: {warning}")
    if warnings:
        return EXIT_DIFFERS
    print(f"preflight OK: the VMs of run {run} in {settings.region} match the spec")
    return EXIT_OK


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        return run_command(args, os.environ)
    except AwsSettingsError as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return EXIT_BAD_SETTING
    except AwsCallError as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return EXIT_AWS_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
