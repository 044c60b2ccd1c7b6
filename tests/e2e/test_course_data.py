"""The course's data path on every `make test`: one epoch over all 10,000 MNIST
test images at batch 128, so 79 iterations, with a narrow DCGAN (--ngf 16
--ndf 16) to keep the training short. `make e2e-full` still runs the course's
full-width network.

It retrains the VM of the shared deployment with the full data, so it comes
after test_configure_e2e.py (pytest runs the files in name order), whose
tests build on the state of the fast run."""

from __future__ import annotations

import time

from dcgan_harness.localrun import FAST_EXTRA_ARGS, default_mnist_dir
from dcgan_harness.output import Expectations, check_complete, parse_output_file

COURSE_IMAGES = 10_000
COURSE_BATCH_SIZE = 128


def test_all_test_images_at_batch_128_make_79_iterations(deployment):
    session = deployment.session
    full_data = session.options.mnist_dir or default_mnist_dir()
    started = time.monotonic()
    result = session.deploy(
        dcgan_mnist_dir=str(full_data),
        dcgan_batch_size=COURSE_BATCH_SIZE,
        dcgan_extra_args=FAST_EXTRA_ARGS,
        # The run key holds the app's arguments, not the data: ask for a new run.
        dcgan_fresh_run=True,
    )
    seconds = time.monotonic() - started
    assert result.ok, result.tail()
    run = parse_output_file(session.output_file())
    assert check_complete(run, Expectations.from_settings(COURSE_IMAGES, COURSE_BATCH_SIZE)) == []
    assert sorted(record.iteration for record in run.iterations) == list(range(79))
    assert run.args["batch_size"] == COURSE_BATCH_SIZE and run.args["ngf"] == 16
    print(f"79 iterations over {COURSE_IMAGES} images: play {seconds:.1f} s, epoch {run.epoch_times[(0, 0)]:.1f} s")
