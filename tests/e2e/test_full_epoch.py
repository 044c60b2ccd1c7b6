"""The course's exact configuration: one epoch over all 10,000 MNIST test images
at batch 128 (79 iterations) on a fresh VM. Minutes long: `make e2e-full`."""

from __future__ import annotations

import pytest

from dcgan_harness.localrun import RunOptions, open_session
from dcgan_harness.output import Expectations, check_complete, parse_output_file

pytestmark = pytest.mark.slow


def test_full_epoch_on_the_mnist_test_split(tmp_path):
    session = open_session(RunOptions(app="offline", results_dir=tmp_path))
    try:
        result = session.deploy()
        assert result.ok, result.tail()
        run = parse_output_file(session.output_file())
        assert check_complete(run, Expectations.from_settings(10_000, 128)) == []
        assert sorted(record.iteration for record in run.iterations) == list(range(79))
        assert {record.num_iterations for record in run.iterations} == {79}
    finally:
        session.close()
