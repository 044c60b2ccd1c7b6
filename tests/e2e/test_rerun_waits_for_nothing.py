"""A rerun on a VM whose image carries the clone's commit skips the build
task, so it waits for no async poll; the MNIST staging is two tasks."""

from __future__ import annotations

BUILD_TASK = "Build the DCGAN image from the clone"


def task_block(output: str, name: str) -> str:
    """The lines Ansible printed for one task, from its header to the next."""
    start = output.index(f"TASK [{name}]")
    end = output.find("\nTASK [", start + 1)
    return output[start:] if end < 0 else output[start:end]


def test_rerun_skips_the_build_without_an_async_wait(deployment):
    # Settles what earlier tests left: a failed run removes the finished-run
    # marker, so the next run trains again.
    settle = deployment.session.deploy()
    assert settle.ok, settle.tail()
    rerun = deployment.session.deploy()
    assert rerun.ok, rerun.tail()
    block = task_block(rerun.output, BUILD_TASK)
    assert "skipping: [compute01]" in block, block
    assert "ASYNC" not in block, block
    assert rerun.changed_tasks == [], f"tasks changed on the rerun: {rerun.changed_tasks}"


def test_first_run_stages_mnist_in_two_tasks(deployment):
    output = deployment.first_run.output
    mnist_tasks = [line for line in output.splitlines() if line.startswith("TASK [") and "MNIST" in line]
    assert len(mnist_tasks) == 2, mnist_tasks
