"""configure.yaml end to end on a disposable VM: the fetched output.txt holds a
complete epoch, a second run changes nothing, a fresh run retrains, and a
failing application fails the play while its output is still fetched.

The tests run in file order on one VM: each builds on the state the one before
left behind."""

from __future__ import annotations

import shutil
import subprocess

from dcgan_harness.localcloud import serve_app, ssh_command
from dcgan_harness.localrun import OFFLINE_APP
from dcgan_harness.output import Expectations, check_complete, parse_output_file

TRAIN_TASK = "Train the DCGAN with its standard output going to output.txt"
BUILD_TASK = "Build the DCGAN image from the clone"


def assert_complete_epoch(path, expected_iterations):
    assert path.is_file(), f"{path} was not fetched"
    run = parse_output_file(path)
    assert check_complete(run, Expectations(iterations=expected_iterations)) == []
    assert run.args is not None and run.args.get("dataset") == "mnist"
    assert (0, 1) in {(rank, size) for rank, size in run.rank_lines}
    iterations = sorted(record.iteration for record in run.iterations)
    assert iterations == list(range(expected_iterations))
    assert set(run.epoch_times) == {(0, 0)}
    return run


def test_first_run_fetches_a_complete_epoch(deployment):
    result = deployment.first_run
    assert result.ok, result.tail()
    session = deployment.session
    assert_complete_epoch(session.output_file(), session.expected_iterations)


def test_second_run_changes_nothing_and_does_not_retrain(deployment):
    session = deployment.session
    before = session.output_file().read_bytes()
    second = session.deploy()
    assert second.ok, second.tail()
    assert second.changed_tasks == [], f"tasks changed on the second run: {second.changed_tasks}"
    assert session.output_file().read_bytes() == before


def test_fresh_run_retrains(deployment):
    session = deployment.session
    before = session.output_file().read_text()
    fresh = session.deploy(dcgan_fresh_run=True)
    assert fresh.ok, fresh.tail()
    assert TRAIN_TASK in fresh.changed_tasks
    after = assert_complete_epoch(session.output_file(), session.expected_iterations)
    assert session.output_file().read_text() != before
    assert after.epoch_times


def test_changed_clone_rebuilds_the_image_and_retrains(deployment, tmp_path):
    session = deployment.session
    app = tmp_path / "app"
    shutil.copytree(OFFLINE_APP, app)
    with open(app / "dist_dcgan.py", "a") as script:
        script.write("\n# A new commit: the image built from the old one is stale.\n")
    served = serve_app(app, session.cloud.run_id)
    assert served.commit != session.repo_commit
    # Later checks of the clone (the infra layer) expect the commit now served.
    session.repo_commit = served.commit
    rerun = session.deploy()
    assert rerun.ok, rerun.tail()
    assert BUILD_TASK in rerun.changed_tasks and TRAIN_TASK in rerun.changed_tasks
    vm = session.cloud.vms[0]
    label = subprocess.run(
        ssh_command(vm, session.cloud.key, "docker image inspect --format '{{ index .Config.Labels \"dcgan.commit\" }}' dist_dcgan:latest"),
        capture_output=True, text=True, timeout=60,
    )
    assert label.stdout.strip() == served.commit, label.stderr
    assert_complete_epoch(session.output_file(), session.expected_iterations)


def test_failing_application_fails_the_play_and_output_is_still_fetched(deployment, tmp_path):
    session = deployment.session
    failed = session.deploy(dcgan_extra_args="--no-such-flag", dcgan_results_dir=str(tmp_path))
    assert not failed.ok
    assert "The DCGAN exited with status 2 on compute01" in failed.output
    fetched = tmp_path / "compute01" / "output.txt"
    assert fetched.is_file(), "the partial output.txt was not fetched after the failure"
    assert "--no-such-flag" in fetched.read_text()
