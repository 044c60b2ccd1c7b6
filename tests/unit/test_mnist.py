import gzip
import hashlib
import os
import struct
from pathlib import Path

import pytest

from dcgan_harness import mnist
from dcgan_harness.mnist import IMAGES_FILE, LABELS_FILE, MnistError

REPO_ROOT = Path(__file__).resolve().parents[2]
REAL_MNIST_DIR = Path(os.environ.get("DCGAN_MNIST_DIR") or REPO_ROOT.parent / "shared" / "data" / "mnist")



@pytest.fixture(scope="module")
def real_mnist_dir():
    """The published test files; their absence fails the tests, so set DCGAN_MNIST_DIR."""
    for name in (IMAGES_FILE, LABELS_FILE):
        assert (REAL_MNIST_DIR / name).is_file(), f"no {name} in {REAL_MNIST_DIR}: set DCGAN_MNIST_DIR to the MNIST folder"
    return REAL_MNIST_DIR


def idx_bytes(dims, payload):
    return bytes((0, 0, 8, len(dims))) + struct.pack(f">{len(dims)}I", *dims) + payload


def synthetic_images(count, rows=3, cols=2):
    # Each image's bytes are distinct, so a wrong slice is visible.
    return idx_bytes(
        (count, rows, cols),
        bytes((i * rows * cols + j) % 256 for i in range(count) for j in range(rows * cols)),
    )


def synthetic_labels(count):
    return idx_bytes((count,), bytes(i % 10 for i in range(count)))


def write_gz(path, data):
    path.write_bytes(gzip.compress(data))
    return path


@pytest.fixture
def synthetic_dir(tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    write_gz(folder / IMAGES_FILE, synthetic_images(5))
    write_gz(folder / LABELS_FILE, synthetic_labels(5))
    return folder


def md5_hex(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def read_gz(path):
    with gzip.open(path, "rb") as stream:
        return stream.read()


def assert_one_line(error):
    assert "\n" not in str(error.value)


# --- verify_test_files -------------------------------------------------------------


def test_verify_names_missing_folder(tmp_path):
    with pytest.raises(MnistError, match="does not exist") as error:
        mnist.verify_test_files(tmp_path / "absent")
    assert str(tmp_path / "absent") in str(error.value)
    assert "DCGAN_MNIST_DIR" in str(error.value)
    assert_one_line(error)


def test_verify_names_missing_file(synthetic_dir):
    (synthetic_dir / LABELS_FILE).unlink()
    with pytest.raises(MnistError, match="is missing") as error:
        mnist.verify_test_files(synthetic_dir)
    assert LABELS_FILE in str(error.value)
    assert_one_line(error)


def test_verify_names_wrong_checksum(synthetic_dir):
    with pytest.raises(MnistError, match="MD5") as error:
        mnist.verify_test_files(synthetic_dir)
    message = str(error.value)
    assert md5_hex(synthetic_dir / IMAGES_FILE) in message
    assert mnist.PUBLISHED_MD5[IMAGES_FILE] in message
    assert "replace it" in message
    assert_one_line(error)


def test_verify_checks_labels_too(synthetic_dir, monkeypatch):
    monkeypatch.setitem(mnist.PUBLISHED_MD5, IMAGES_FILE, md5_hex(synthetic_dir / IMAGES_FILE))
    with pytest.raises(MnistError, match=LABELS_FILE.replace(".", r"\.")):
        mnist.verify_test_files(synthetic_dir)


def test_verify_returns_paths_when_sums_match(synthetic_dir, monkeypatch):
    for name in (IMAGES_FILE, LABELS_FILE):
        monkeypatch.setitem(mnist.PUBLISHED_MD5, name, md5_hex(synthetic_dir / name))
    assert mnist.verify_test_files(synthetic_dir) == {
        IMAGES_FILE: synthetic_dir / IMAGES_FILE,
        LABELS_FILE: synthetic_dir / LABELS_FILE,
    }


def test_published_sums_are_the_official_ones():
    assert mnist.PUBLISHED_MD5 == {
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    }


# --- write_subset ------------------------------------------------------------------


def test_subset_rewrites_counts_and_keeps_first_items(synthetic_dir, tmp_path):
    written = mnist.write_subset(synthetic_dir, tmp_path / "dst", 2)

    assert read_gz(written[IMAGES_FILE]) == idx_bytes((2, 3, 2), bytes(range(12)))
    assert read_gz(written[LABELS_FILE]) == idx_bytes((2,), bytes((0, 1)))


def test_subset_of_everything_equals_source(synthetic_dir, tmp_path):
    written = mnist.write_subset(synthetic_dir, tmp_path / "dst", 5)
    assert read_gz(written[IMAGES_FILE]) == synthetic_images(5)
    assert read_gz(written[LABELS_FILE]) == synthetic_labels(5)


def test_subset_files_are_identical_across_runs(synthetic_dir, tmp_path, monkeypatch):
    first = mnist.write_subset(synthetic_dir, tmp_path / "a", 3)
    # gzip stamps the current time unless told otherwise; a later clock must not matter.
    monkeypatch.setattr("time.time", lambda: 2_000_000_000.0)
    second = mnist.write_subset(synthetic_dir, tmp_path / "b", 3)
    assert first[IMAGES_FILE].read_bytes() == second[IMAGES_FILE].read_bytes()


def test_subset_leaves_no_partial_files(synthetic_dir, tmp_path):
    mnist.write_subset(synthetic_dir, tmp_path / "dst", 3)
    assert sorted(p.name for p in (tmp_path / "dst").iterdir()) == sorted([IMAGES_FILE, LABELS_FILE])


@pytest.mark.parametrize("k", [0, -1, 6])
def test_subset_rejects_impossible_sizes(synthetic_dir, tmp_path, k):
    with pytest.raises(MnistError, match="holds 5") as error:
        mnist.write_subset(synthetic_dir, tmp_path / "dst", k)
    assert_one_line(error)
    assert not (tmp_path / "dst").exists()


def test_subset_rejects_mismatched_files(synthetic_dir, tmp_path):
    write_gz(synthetic_dir / LABELS_FILE, synthetic_labels(4))
    with pytest.raises(MnistError, match="5 images but 4 labels"):
        mnist.write_subset(synthetic_dir, tmp_path / "dst", 2)


def test_subset_rejects_truncated_payload(synthetic_dir, tmp_path):
    write_gz(synthetic_dir / IMAGES_FILE, synthetic_images(5)[:-1])
    with pytest.raises(MnistError, match="truncated"):
        mnist.write_subset(synthetic_dir, tmp_path / "dst", 2)


def test_subset_rejects_files_that_are_not_gzip(synthetic_dir, tmp_path):
    (synthetic_dir / IMAGES_FILE).write_bytes(synthetic_images(5))
    with pytest.raises(MnistError, match="not a readable gzip file") as error:
        mnist.write_subset(synthetic_dir, tmp_path / "dst", 2)
    assert_one_line(error)


def test_subset_rejects_non_idx_content(synthetic_dir, tmp_path):
    write_gz(synthetic_dir / IMAGES_FILE, b"<html>not found</html>")
    with pytest.raises(MnistError, match="not an unsigned-byte idx file"):
        mnist.write_subset(synthetic_dir, tmp_path / "dst", 2)


def test_subset_names_missing_source_folder(tmp_path):
    with pytest.raises(MnistError, match="does not exist"):
        mnist.write_subset(tmp_path / "absent", tmp_path / "dst", 2)


# --- stage_for_torchvision ---------------------------------------------------------


def test_stage_lays_out_what_torchvision_mnist_reads(synthetic_dir, tmp_path):
    raw = mnist.stage_for_torchvision(synthetic_dir, tmp_path / "data")

    assert raw == tmp_path / "data" / "MNIST" / "raw"
    assert (raw / "t10k-images-idx3-ubyte").read_bytes() == synthetic_images(5)
    assert (raw / "t10k-labels-idx1-ubyte").read_bytes() == synthetic_labels(5)
    assert (raw / "train-images-idx3-ubyte").stat().st_size == 0
    assert (raw / "train-labels-idx1-ubyte").stat().st_size == 0


def test_cli_reports_errors_on_one_line(tmp_path, capsys):
    assert mnist.main(["verify", str(tmp_path / "absent")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: MNIST folder") and err.count("\n") == 1


# --- the published files -----------------------------------------------------------


def test_real_files_match_published_sums(real_mnist_dir):
    paths = mnist.verify_test_files(real_mnist_dir)
    assert set(paths) == {IMAGES_FILE, LABELS_FILE}


def test_real_subset_holds_first_images(tmp_path, real_mnist_dir):
    written = mnist.write_subset(real_mnist_dir, tmp_path, 256)
    images = read_gz(written[IMAGES_FILE])
    labels = read_gz(written[LABELS_FILE])
    original_images = read_gz(real_mnist_dir / IMAGES_FILE)
    original_labels = read_gz(real_mnist_dir / LABELS_FILE)

    assert struct.unpack(">4I", images[:16]) == (0x803, 256, 28, 28)
    assert struct.unpack(">2I", labels[:8]) == (0x801, 256)
    assert images[16:] == original_images[16 : 16 + 256 * 28 * 28]
    assert labels[8:] == original_labels[8 : 8 + 256]
    # The published test split starts with a 7, a 2 and a 1.
    assert list(labels[8:11]) == [7, 2, 1]


def test_subset_of_chosen_images_keeps_their_order(synthetic_dir, tmp_path):
    written = mnist.write_subset(synthetic_dir, tmp_path / "dst", 2, indices=[3, 1])
    assert read_gz(written[IMAGES_FILE]) == idx_bytes((2, 3, 2), bytes(range(18, 24)) + bytes(range(6, 12)))
    assert read_gz(written[LABELS_FILE]) == idx_bytes((2,), bytes((3, 1)))


@pytest.mark.parametrize("indices", [[0, 5], [1], [-1, 2]])
def test_subset_rejects_impossible_choices(synthetic_dir, tmp_path, indices):
    with pytest.raises(MnistError, match="give 2 indices below 5"):
        mnist.write_subset(synthetic_dir, tmp_path / "dst", 2, indices=indices)
