"""The journey layer: the student's AWS path, `make aws-up`, `make aws-run`
and `make aws-down`, end to end against a moto server whose instances are
backed by local VMs (see backed_cloud.py)."""

from __future__ import annotations

import json
import shlex

import boto3
import pytest
from backed_cloud import (
    VARS_SH_SETTINGS,
    VM_IMAGE,
    Backer,
    Journey,
    copy_tracked_files,
    make_key_pair,
    repo_ssh_args,
)
from moto_cloud import KEYPAIR, REGION, base_env, moto_server

from dcgan_harness.localcloud import down, ensure_engine, prepare_images, serve_app
from dcgan_harness.localcloud.vms import new_run_id
from dcgan_harness.localrun import (
    FAST_EXTRA_ARGS,
    FAST_MNIST_LIMIT,
    OFFLINE_APP,
    RunOptions,
    stage_mnist,
)


@pytest.fixture(scope="module")
def journey(tmp_path_factory):
    work = tmp_path_factory.mktemp("journey")
    copy, keys, log_dir = work / "repo", work / "keys", work / "logs"
    for folder in (copy, keys, log_dir):
        folder.mkdir()
    copy_tracked_files(copy)
    key_file = copy / "key.pem"
    public_key = make_key_pair(key_file)
    wrong_key_file = keys / "someone-else.pem"
    make_key_pair(wrong_key_file)

    # Bad data and a missing engine fail here, before anything is started.
    mnist_dir = stage_mnist(RunOptions(mnist_limit=FAST_MNIST_LIMIT), work)
    client = ensure_engine()
    images = prepare_images(client, VM_IMAGE)
    run_prefix = f"awsj-{new_run_id()}"

    with moto_server(work) as moto_url:
        settings = base_env(moto_url)
        ec2 = boto3.client(
            "ec2", region_name=REGION, endpoint_url=moto_url,
            aws_access_key_id=settings["AWS_ACCESS_KEY_ID"], aws_secret_access_key=settings["AWS_SECRET_ACCESS_KEY"],
        )  # fmt: skip
        # As a student imports (or creates) the key pair whose .pem is key.pem.
        ec2.import_key_pair(KeyName=KEYPAIR, PublicKeyMaterial=public_key.encode())
        (copy / "vars.sh").write_text(
            "".join(f"export {name}={shlex.quote(settings[name])}\n" for name in VARS_SH_SETTINGS)
        )
        ssh_config = work / "ssh_config"
        env = {name: value for name, value in settings.items() if name not in VARS_SH_SETTINGS}
        env.update(
            ANSIBLE_CONFIG=str(copy / "ansible.cfg"),
            ANSIBLE_SSH_ARGS=f"-F {ssh_config} {repo_ssh_args()}",
        )
        served = None
        backer = None
        try:
            # Named like upstream, so the redirected URL names it (see upstream_redirect).
            served = serve_app(OFFLINE_APP, run_prefix, name="Distributed-DCGAN", client=client)
            backer = Backer(
                ec2=ec2, run_tag="dcgan", public_key=public_key, ssh_config=ssh_config,
                known_hosts=work / "known_hosts", run_prefix=run_prefix, client=client, images=images,
                served_url=served.url,
            )  # fmt: skip
            backer.start()
            run_vars = work / "fast-run.json"
            run_vars.write_text(json.dumps({
                # The fast run of the e2e layer: a narrow DCGAN on the first MNIST images.
                "dcgan_mnist_dir": str(mnist_dir),
                "dcgan_extra_args": FAST_EXTRA_ARGS,
                "dcgan_build_poll": 1,
                "dcgan_run_poll": 1,
            }))  # fmt: skip
            yield Journey(copy, env, backer, moto_url, ec2, key_file, wrong_key_file, run_vars, log_dir)
        finally:
            if backer is not None:
                backer.stop()
                backer.remove_all()
            down(run_prefix, client)


