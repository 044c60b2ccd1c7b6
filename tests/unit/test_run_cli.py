"""`dcgan-harness run` refuses bad input in one line, before it touches Docker or the network."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dcgan_harness import cli, localrun
from dcgan_harness.mnist import IMAGES_FILE, LABELS_FILE, PUBLISHED_MD5


@pytest.fixture
def no_docker(monkeypatch):
    """Fail the test if `run` gets as far as the engine, the images, the VMs or the network."""

    def forbidden(what):
        def called(*args, **kwargs):
            raise AssertionError(f"`run` reached {what} before refusing its input")

        return called

    monkeypatch.setattr(localrun, "ensure_engine", forbidden("ensure_engine"))
    monkeypatch.setattr(localrun, "prepare_images", forbidden("prepare_images"))
    monkeypatch.setattr(localrun, "start_target", forbidden("the VMs"))
    monkeypatch.setattr(localrun, "upstream_reachable", forbidden("the upstream probe"))


@pytest.fixture
def missing_dir(tmp_path) -> Path:
    return tmp_path / "no-such-mnist"


@pytest.fixture
def junk_mnist_dir(tmp_path) -> Path:
    folder = tmp_path / "junk-mnist"
    folder.mkdir()
    (folder / IMAGES_FILE).write_bytes(b"not the MNIST images\n")
    (folder / LABELS_FILE).write_bytes(b"not the MNIST labels\n")
    return folder


@pytest.fixture
def app_without_dockerfile(tmp_path) -> Path:
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "dist_dcgan.py").write_text("print('hi')\n")
    return folder


def one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    return lines[0]


def run_in_process(capsys, *args: str) -> tuple[int, str]:
    code = cli.main(["run", *args])
    captured = capsys.readouterr()
    assert captured.out == ""
    return code, one_line(captured.err)


def test_missing_mnist_folder_is_refused_in_one_line(no_docker, missing_dir, capsys):
    code, line = run_in_process(capsys, "--mnist-dir", str(missing_dir))
    assert code == 2
    assert f"MNIST folder {missing_dir} does not exist" in line
    # The fix: where the files go, or how to point at them.
    assert f"put {IMAGES_FILE} and {LABELS_FILE} in it" in line
    assert "DCGAN_MNIST_DIR" in line


def test_mnist_files_with_wrong_checksums_are_refused_in_one_line(no_docker, junk_mnist_dir, capsys):
    code, line = run_in_process(capsys, "--mnist-dir", str(junk_mnist_dir))
    assert code == 2
    assert f"MNIST file {junk_mnist_dir / IMAGES_FILE} has MD5" in line
    assert f"expected {PUBLISHED_MD5[IMAGES_FILE]}" in line
    assert f"replace it with the original {IMAGES_FILE}" in line


def test_a_missing_mnist_file_is_named_before_a_bad_checksum(no_docker, junk_mnist_dir, capsys):
    (junk_mnist_dir / LABELS_FILE).unlink()
    code, line = run_in_process(capsys, "--mnist-dir", str(junk_mnist_dir))
    assert code == 2
    assert f"MNIST file {junk_mnist_dir / LABELS_FILE} is missing" in line
    assert f"copy {LABELS_FILE}" in line


def test_app_dir_without_dockerfile_is_refused_in_one_line(no_docker, app_without_dockerfile, missing_dir, capsys):
    # The MNIST folder is missing too: the app folder is checked first, and alone named.
    code, line = run_in_process(capsys, "--app-dir", str(app_without_dockerfile), "--mnist-dir", str(missing_dir))
    assert code == 2
    assert f"{app_without_dockerfile} has no Dockerfile" in line
    assert "--app-dir needs a folder with a Dockerfile and dist_dcgan.py" in line


@pytest.mark.parametrize("case", ["missing-mnist", "junk-mnist", "app-without-dockerfile"])
def test_the_terminal_sees_one_line_and_no_traceback(case, missing_dir, junk_mnist_dir, app_without_dockerfile):
    """The real entry point, as `python -m dcgan_harness run ...` in a shell.

    DOCKER_HOST points at nothing: had `run` reached the engine first, the one
    line would be about Docker rather than the input."""
    args = {
        "missing-mnist": ["--mnist-dir", str(missing_dir)],
        "junk-mnist": ["--mnist-dir", str(junk_mnist_dir)],
        "app-without-dockerfile": ["--app-dir", str(app_without_dockerfile), "--mnist-dir", str(missing_dir)],
    }[case]
    expected = {
        "missing-mnist": f"MNIST folder {missing_dir} does not exist",
        "junk-mnist": f"MNIST file {junk_mnist_dir / IMAGES_FILE} has MD5",
        "app-without-dockerfile": f"{app_without_dockerfile} has no Dockerfile",
    }[case]
    env = dict(os.environ, DOCKER_HOST="unix:///nonexistent/docker.sock")
    env.pop("DCGAN_MNIST_DIR", None)
    proc = subprocess.run(
        [sys.executable, "-m", "dcgan_harness", "run", *args],
        capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert expected in one_line(proc.stderr)
