"""MNIST fetched into a folder on first use, against a real HTTP mirror on 127.0.0.1.

The mirror serves the published .gz files from the project's MNIST folder
(or damaged copies of them); nothing here leaves this machine.
"""

from __future__ import annotations

import os
import re
import socket
import threading
from contextlib import closing
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dcgan_harness import cli, localrun, mnist
from dcgan_harness.mnist import IMAGES_FILE, LABELS_FILE, PUBLISHED_MD5, MnistError

REPO_ROOT = Path(__file__).resolve().parents[2]
REAL_MNIST_DIR = Path(os.environ.get("DCGAN_MNIST_DIR") or REPO_ROOT.parent / "shared" / "data" / "mnist")
PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


@pytest.fixture(scope="module")
def published() -> dict[str, bytes]:
    """The two published .gz files, as the mirror serves them; their absence fails the tests."""
    for name in PUBLISHED_MD5:
        assert (REAL_MNIST_DIR / name).is_file(), f"no {name} in {REAL_MNIST_DIR}: set DCGAN_MNIST_DIR to the MNIST folder"
    return {name: (REAL_MNIST_DIR / name).read_bytes() for name in PUBLISHED_MD5}


@dataclass
class Mirror:
    """What the local mirror serves under /mnist/, and every path it was asked for."""

    files: dict[str, bytes]
    url: str = ""
    requests: list[str] = field(default_factory=list)
    # Names sent with their full Content-Length but only half their bytes.
    cut_short: set[str] = field(default_factory=set)
    # Whether responses say how long they are.
    with_length: bool = True


def handler_for(mirror: Mirror) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            mirror.requests.append(self.path)
            name = self.path.removeprefix("/mnist/")
            body = mirror.files.get(name)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            if mirror.with_length:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2] if name in mirror.cut_short else body)

        def log_message(self, *args):
            pass

    return Handler


@pytest.fixture
def mirror(published, monkeypatch):
    """A real HTTP server on 127.0.0.1 serving the published files; $DCGAN_MNIST_URL points at it."""
    served = Mirror(dict(published))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(served))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    # No trailing slash: the fetch must join the base and the names itself.
    served.url = f"http://127.0.0.1:{server.server_address[1]}/mnist"
    monkeypatch.setenv(mnist.MIRROR_VARIABLE, served.url)
    yield served
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    # A proxy in the environment would turn requests for 127.0.0.1 into requests elsewhere.
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv(mnist.MIRROR_VARIABLE, raising=False)


@pytest.fixture
def closed_port_url():
    """A URL on 127.0.0.1 where nothing listens: the connection is refused."""
    with closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist/"


def served_paths(names):
    return [f"/mnist/{name}" for name in names]


def complete_looking(folder: Path) -> list[str]:
    """Files in folder under a name the harness would read."""
    return sorted(path.name for path in folder.iterdir() if path.name in PUBLISHED_MD5) if folder.exists() else []


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name not in PUBLISHED_MD5) if folder.exists() else []


def assert_one_line(error):
    assert "\n" not in str(error.value), str(error.value)


# --- A first fetch ------------------------------------------------------------------


def test_fetch_writes_files_that_verify(mirror, published, tmp_path):
    folder = tmp_path / "checkout" / ".cache" / "mnist"

    assert mnist.fetch_test_files(folder) == folder

    assert mnist.verify_test_files(folder) == {name: folder / name for name in PUBLISHED_MD5}
    for name, body in published.items():
        assert (folder / name).read_bytes() == body
    assert leftovers(folder) == []
    assert mirror.requests == served_paths(PUBLISHED_MD5)


def test_fetch_reports_bytes_so_far_and_total_at_every_tenth(mirror, published, tmp_path, capsys):
    mnist.fetch_test_files(tmp_path / "mnist")
    err = capsys.readouterr().err

    total = len(published[IMAGES_FILE])
    assert f"mnist: downloading {mirror.url}/{IMAGES_FILE} into {tmp_path / 'mnist'}" in err
    lines = [line for line in err.splitlines() if line.startswith(f"mnist: {IMAGES_FILE}: ")]
    shown = [re.fullmatch(rf"mnist: {re.escape(IMAGES_FILE)}: ([\d,]+) of ([\d,]+) bytes \((\d+) %\)", line) for line in lines]
    assert all(shown), lines
    assert {int(match[2].replace(",", "")) for match in shown} == {total}
    percents = [int(match[3]) for match in shown]
    assert percents == sorted(percents) and percents[-1] == 100
    # At least one line per tenth of the file: 10 %, 20 %, ... 100 %.
    assert {percent // 10 for percent in percents} >= set(range(1, 11)), percents
    assert f"mnist: {LABELS_FILE}: {len(published[LABELS_FILE]):,} of {len(published[LABELS_FILE]):,} bytes (100 %)" in err


def test_a_mirror_that_does_not_give_sizes_still_shows_bytes_so_far(mirror, tmp_path, capsys, monkeypatch):
    mirror.with_length = False
    monkeypatch.setattr(mnist, "PROGRESS_EVERY_S", 0)

    mnist.verify_test_files(mnist.fetch_test_files(tmp_path / "mnist"))

    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith(f"mnist: {IMAGES_FILE}: ")]
    assert len(lines) > 1 and all(re.fullmatch(r".*: [\d,]+ bytes", line) for line in lines), lines


# --- A mirror that sends the wrong bytes ---------------------------------------------


@pytest.mark.parametrize("damaged", [IMAGES_FILE, LABELS_FILE])
def test_corrupted_bytes_give_one_md5_line_and_no_file_that_looks_complete(mirror, published, tmp_path, damaged):
    body = bytearray(published[damaged])
    body[len(body) // 2] ^= 0xFF
    mirror.files[damaged] = bytes(body)
    folder = tmp_path / "mnist"

    with pytest.raises(MnistError) as error:
        mnist.fetch_test_files(folder)

    message = str(error.value)
    assert_one_line(error)
    assert f"{mirror.url}/{damaged} sent a file with MD5 " in message
    assert f"expected {PUBLISHED_MD5[damaged]}" in message
    assert damaged not in complete_looking(folder)
    assert leftovers(folder) == []
    with pytest.raises(MnistError):
        mnist.verify_test_files(folder)


def test_a_download_cut_short_leaves_no_file_that_looks_complete(mirror, tmp_path):
    mirror.cut_short.add(IMAGES_FILE)
    folder = tmp_path / "mnist"

    with pytest.raises(MnistError) as error:
        mnist.fetch_test_files(folder)

    assert_one_line(error)
    assert IMAGES_FILE in str(error.value)
    assert complete_looking(folder) == []
    assert leftovers(folder) == []


def test_a_mirror_without_the_files_is_named_with_its_answer(mirror, tmp_path):
    del mirror.files[IMAGES_FILE]

    with pytest.raises(MnistError, match=r"HTTP 404") as error:
        mnist.fetch_test_files(tmp_path / "mnist")

    assert_one_line(error)
    assert f"put {IMAGES_FILE} and {LABELS_FILE}" in str(error.value)


# --- No network ---------------------------------------------------------------------


def test_an_unreachable_mirror_says_where_to_put_the_files_in_one_line(closed_port_url, tmp_path, monkeypatch):
    monkeypatch.setenv(mnist.MIRROR_VARIABLE, closed_port_url)
    folder = tmp_path / "checkout" / ".cache" / "mnist"

    with pytest.raises(MnistError) as error:
        mnist.fetch_test_files(folder)

    message = str(error.value)
    assert_one_line(error)
    assert f"cannot download {closed_port_url}{IMAGES_FILE}" in message
    assert "refused" in message.lower()
    assert f"put {IMAGES_FILE} and {LABELS_FILE} from the published MNIST test split in {folder}" in message
    assert "or set DCGAN_MNIST_DIR" in message
    assert complete_looking(folder) == [] and leftovers(folder) == []


def test_a_host_that_never_answers_fails_within_the_timeout(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist, "FETCH_TIMEOUT_S", 0.5)
    # Listening but never accepting: the connection is made, the request is never answered.
    with closing(socket.socket()) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        monkeypatch.setenv(mnist.MIRROR_VARIABLE, f"http://127.0.0.1:{silent.getsockname()[1]}/")
        with pytest.raises(MnistError, match=r"no answer within 0.5 s") as error:
            mnist.fetch_test_files(tmp_path / "mnist")
    assert_one_line(error)
    assert f"in {tmp_path / 'mnist'}" in str(error.value)


# --- A folder that has the files already -----------------------------------------------


def test_a_verified_folder_is_reused_without_any_request(mirror, tmp_path):
    folder = tmp_path / "mnist"
    mnist.fetch_test_files(folder)
    written = {name: (folder / name).stat().st_mtime_ns for name in PUBLISHED_MD5}
    mirror.requests.clear()

    assert mnist.fetch_test_files(folder) == folder

    assert mirror.requests == []
    assert {name: (folder / name).stat().st_mtime_ns for name in PUBLISHED_MD5} == written


def test_a_verified_folder_needs_no_network(published, closed_port_url, tmp_path, monkeypatch):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name, body in published.items():
        (folder / name).write_bytes(body)
    monkeypatch.setenv(mnist.MIRROR_VARIABLE, closed_port_url)

    mnist.verify_test_files(mnist.fetch_test_files(folder))


def test_a_damaged_file_in_the_folder_is_fetched_again_alone(mirror, published, tmp_path):
    folder = tmp_path / "mnist"
    mnist.fetch_test_files(folder)
    (folder / LABELS_FILE).write_bytes(b"half a label file")
    mirror.requests.clear()

    mnist.fetch_test_files(folder)

    assert mirror.requests == served_paths([LABELS_FILE])
    assert (folder / LABELS_FILE).read_bytes() == published[LABELS_FILE]


# --- Where the harness looks (localrun.default_mnist_dir) ------------------------------


@pytest.fixture
def newcomer_checkout(tmp_path, monkeypatch):
    """A clone with no ../shared beside it; DCGAN_MNIST_DIR empty, as the Makefile exports it then."""
    checkout = tmp_path / "newcomer" / "repo"
    checkout.mkdir(parents=True)
    monkeypatch.setattr(localrun, "REPO_ROOT", checkout)
    monkeypatch.setenv("DCGAN_MNIST_DIR", "")
    return checkout


def test_without_a_folder_the_harness_fetches_into_the_checkouts_cache(mirror, newcomer_checkout):
    folder = localrun.default_mnist_dir()

    assert folder == newcomer_checkout / ".cache" / "mnist"
    mnist.verify_test_files(folder)
    assert mirror.requests == served_paths(PUBLISHED_MD5)
    # The second run reads the cache.
    mirror.requests.clear()
    assert localrun.default_mnist_dir() == folder
    assert mirror.requests == []


def test_a_shared_folder_beside_the_checkout_is_used_as_before(mirror, newcomer_checkout):
    beside = newcomer_checkout.parent / "shared" / "data" / "mnist"
    beside.mkdir(parents=True)

    assert localrun.default_mnist_dir() == beside
    assert mirror.requests == []
    assert not (newcomer_checkout / ".cache").exists()


def test_dcgan_mnist_dir_wins_and_fetches_nothing(mirror, newcomer_checkout, tmp_path, monkeypatch):
    monkeypatch.setenv("DCGAN_MNIST_DIR", str(tmp_path / "given"))

    assert localrun.default_mnist_dir() == tmp_path / "given"
    assert mirror.requests == []


def test_run_without_network_or_folder_is_refused_in_one_line(newcomer_checkout, closed_port_url, monkeypatch, capsys):
    monkeypatch.setenv(mnist.MIRROR_VARIABLE, closed_port_url)
    for step in ("ensure_engine", "prepare_images", "upstream_reachable"):
        monkeypatch.setattr(localrun, step, lambda *args, step=step, **kwargs: pytest.fail(f"`run` reached {step}"))

    code = cli.main(["run", "--vms", "docker", "--offline"])

    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    # The download announces itself; the failure is the one line after it.
    error_lines = [line for line in err.splitlines() if not line.startswith("mnist: downloading ")]
    assert len(error_lines) == 1, err
    assert error_lines[0].startswith("error: cannot download ")
    assert f"in {newcomer_checkout / '.cache' / 'mnist'}, or set DCGAN_MNIST_DIR" in error_lines[0]
