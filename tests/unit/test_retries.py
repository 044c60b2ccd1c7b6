"""Steps that fetch from package mirrors are retried; other failures are not swallowed."""

from __future__ import annotations

import pytest

from dcgan_harness.localcloud.engine import LocalCloudError, with_retries


def flaky(failures: int):
    calls = []

    def action():
        calls.append(1)
        if len(calls) <= failures:
            raise LocalCloudError(f"mirror dropped the connection (call {len(calls)})")
        return "done"

    return action, calls


def test_a_step_that_fails_twice_succeeds_on_the_third_attempt(capsys):
    action, calls = flaky(2)
    assert with_retries(action, "apt-get", pause_s=0) == "done"
    assert len(calls) == 3
    assert "apt-get failed (mirror dropped the connection (call 1)); trying again" in capsys.readouterr().err


def test_a_step_that_keeps_failing_raises_its_last_error():
    action, calls = flaky(5)
    with pytest.raises(LocalCloudError, match="call 3"):
        with_retries(action, "apt-get", attempts=3, pause_s=0)
    assert len(calls) == 3


def test_other_errors_are_not_retried():
    calls = []

    def broken():
        calls.append(1)
        raise ValueError("a bug, not a mirror")

    with pytest.raises(ValueError):
        with_retries(broken, "step", pause_s=0)
    assert len(calls) == 1
