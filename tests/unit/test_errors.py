"""One error base: every error a user can act on is a HarnessError, and one function turns it into an exit status."""

from __future__ import annotations

import pytest

from dcgan_harness import aws, mnist, report
from dcgan_harness.errors import INTERRUPTED, HarnessError, run_command
from dcgan_harness.grade import git, outside, reference, rubric, submission
from dcgan_harness.localcloud.engine import LocalCloudError
from dcgan_harness.rules.loader import PlaybookError

USER_FACING = (
    LocalCloudError, mnist.MnistError, report.ReportError, PlaybookError, aws.AwsSettingsError, aws.AwsCallError,
    reference.ReferenceError, submission.SubmissionError, outside.EvidenceError, git.GitError, rubric.RubricError,
)  # fmt: skip


@pytest.mark.parametrize("error", USER_FACING, ids=lambda e: e.__name__)
def test_every_user_facing_error_is_a_harness_error(error):
    assert issubclass(error, HarnessError)


def test_an_error_becomes_one_line_and_its_exit_status(capsys):
    def body() -> int:
        raise LocalCloudError("no engine\n  here; install docker.io")

    assert run_command(body) == 2
    assert capsys.readouterr().err == "error: no engine here; install docker.io\n"


def test_ctrl_c_exits_130_with_the_commands_own_words(capsys):
    def body() -> int:
        raise KeyboardInterrupt

    assert run_command(body, "interrupted; run cloud down") == INTERRUPTED
    assert capsys.readouterr().err == "interrupted; run cloud down\n"


def test_a_body_that_ends_keeps_its_status():
    assert run_command(lambda: 1) == 1


def test_a_bug_is_not_hidden_as_a_user_error():
    with pytest.raises(ZeroDivisionError):
        run_command(lambda: 1 // 0)
