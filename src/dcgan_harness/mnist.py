"""The MNIST test split kept offline: checking it, fetching it once, cutting subsets, laying it out for torchvision.

Dataset hosts cannot be reached from the machines that run the app, so the
published t10k files are carried alongside the project and handed to
torchvision's MNIST class as if it had downloaded them. Where no folder holds
them, fetch_test_files downloads them once from the published mirror.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import ssl
import struct
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import TextIO

from .errors import HarnessError

IMAGES_FILE = "t10k-images-idx3-ubyte.gz"
LABELS_FILE = "t10k-labels-idx1-ubyte.gz"

# The MD5s of the published .gz files (LeCun's t10k-*.gz), as torchvision's MNIST.resources
# lists them beside the mirror below, and as shared/data/mnist/MD5SUMS holds them. Checked on the
# .gz files themselves: those are what the folders hold and what the mirror serves.
PUBLISHED_MD5 = {
    IMAGES_FILE: "9fb629c4189551a2d022fa330f9573f3",
    LABELS_FILE: "ec29112dd5afa0611ce80d1b7f02629c",
}

# The mirror torchvision downloads MNIST from; $DCGAN_MNIST_URL names another one.
DEFAULT_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
MIRROR_VARIABLE = "DCGAN_MNIST_URL"
# Per connection attempt and per read: a host that answers nothing fails within this.
FETCH_TIMEOUT_S = 30
# What a missing route, a failed name lookup, a refused or dropped connection and a
# silent host raise; a full disk or an unwritable folder raise other OSErrors.
NETWORK_ERRORS = (urllib.error.URLError, HTTPException, ConnectionError, TimeoutError, ssl.SSLError)
# A download reports its progress at least this often, and at every tenth of the file.
PROGRESS_EVERY_S = 5

# torchvision's MNIST checks that these exist even when only the test split is
# read; it never opens them then, so empty files are enough.
TRAIN_PLACEHOLDERS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")

# idx magic: two zero bytes, the element type, the number of dimensions.
UNSIGNED_BYTE = 0x08


class MnistError(HarnessError):
    """The MNIST files are missing, damaged or not what the caller asked for."""


@dataclass(frozen=True)
class IdxArray:
    dims: tuple[int, ...]
    payload: bytes

    @property
    def count(self) -> int:
        return self.dims[0]

    @property
    def item_size(self) -> int:
        size = 1
        for dim in self.dims[1:]:
            size *= dim
        return size


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def require_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise MnistError(
            f"MNIST folder {folder} does not exist: create it and put {IMAGES_FILE} and {LABELS_FILE} in it "
            f"(or point DCGAN_MNIST_DIR at the folder that has them)"
        )


def require_file(path: Path) -> None:
    if not path.is_file():
        raise MnistError(
            f"MNIST file {path} is missing: copy {path.name} from the published MNIST test split into {path.parent}"
        )


def verify_test_files(folder: str | os.PathLike) -> dict[str, Path]:
    """Check both t10k files against their published MD5 sums; return their paths by name."""
    folder = Path(folder)
    require_folder(folder)
    paths = {name: folder / name for name in PUBLISHED_MD5}
    # Every absent file first: a missing file is a clearer cause than a bad sum.
    for path in paths.values():
        require_file(path)
    for name, expected in PUBLISHED_MD5.items():
        path = paths[name]
        actual = md5_of(path)
        if actual != expected:
            raise MnistError(
                f"MNIST file {path} has MD5 {actual}, expected {expected}: it is damaged or not the published "
                f"file; replace it with the original {name}"
            )
    return paths


# --- Fetching -----------------------------------------------------------------------


def fetch_test_files(folder: str | os.PathLike, mirror: str | None = None, log: TextIO | None = None) -> Path:
    """Make sure folder holds both published t10k files, downloading those it lacks; return folder.

    A file already there with its published MD5 is kept without asking the
    mirror anything. mirror defaults to $DCGAN_MNIST_URL, else DEFAULT_MIRROR;
    progress goes to log (default stderr).
    """
    folder = Path(folder)
    mirror = mirror or os.environ.get(MIRROR_VARIABLE) or DEFAULT_MIRROR
    log = log or sys.stderr
    for name, expected in PUBLISHED_MD5.items():
        path = folder / name
        if path.is_file() and md5_of(path) == expected:
            continue
        try:
            folder.mkdir(parents=True, exist_ok=True)
            download(f"{mirror.rstrip('/')}/{name}", path, expected, log)
        except OSError as error:
            # Only this machine's side is left here: network failures are MnistErrors already.
            raise MnistError(
                f"cannot write {error.filename or path}: {error.strerror or error}; make {folder} writable, "
                f"or set DCGAN_MNIST_DIR to a folder that holds {IMAGES_FILE} and {LABELS_FILE}"
            ) from error
    return folder


def download(url: str, path: Path, expected_md5: str, log: TextIO) -> None:
    """url into path, whole and with the expected MD5, or not at all."""
    # A hidden name of its own: a partial download never looks complete, and two
    # processes fetching at once do not write into the same file.
    fd, partial_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    partial = Path(partial_name)
    try:
        with os.fdopen(fd, "wb") as stream:
            actual = copy_with_progress(url, stream, path, log)
            stream.flush()
            os.fsync(stream.fileno())
        if actual != expected_md5:
            raise MnistError(
                f"{url} sent a file with MD5 {actual}, expected {expected_md5}: it is damaged or not the "
                f"published {path.name}; try again, set {MIRROR_VARIABLE} to another mirror, or put the "
                f"published file in {path.parent}"
            )
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def copy_with_progress(url: str, stream, path: Path, log: TextIO) -> str:
    """Write url's body to stream, reporting progress on log; its MD5."""
    digest = hashlib.md5()
    print(f"mnist: downloading {url} into {path.parent}", file=log, flush=True)
    try:
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as response:
            total = int(response.headers.get("Content-Length") or 0)
            done, reported_at, reported_tenths = 0, time.monotonic(), 0
            for chunk in iter(lambda: response.read(1 << 16), b""):
                stream.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                tenths = done * 10 // total if total else 0
                if tenths > reported_tenths or time.monotonic() - reported_at >= PROGRESS_EVERY_S:
                    print(f"mnist: {path.name}: {progress_text(done, total)}", file=log, flush=True)
                    reported_at, reported_tenths = time.monotonic(), tenths
    except (*NETWORK_ERRORS, ValueError) as error:  # ValueError: a URL urllib cannot read
        raise MnistError(
            f"cannot download {url} ({network_reason(error)}): put {IMAGES_FILE} and {LABELS_FILE} from the "
            f"published MNIST test split in {path.parent}, or set DCGAN_MNIST_DIR to a folder that has them"
        ) from error
    return digest.hexdigest()


def progress_text(done: int, total: int) -> str:
    if not total:
        return f"{done:,} bytes"
    return f"{done:,} of {total:,} bytes ({done * 100 // total} %)"


def network_reason(error: BaseException) -> str:
    """What went wrong, in words that fit in one line: the reason of a URLError, not its wrapper."""
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(reason, TimeoutError):
        reason = f"no answer within {FETCH_TIMEOUT_S} s"
    return " ".join(str(reason).split()) or type(reason).__name__


def parse_idx(data: bytes, source: str | os.PathLike) -> IdxArray:
    if len(data) < 4 or data[0] or data[1] or data[2] != UNSIGNED_BYTE or not 1 <= data[3] <= 3:
        raise MnistError(f"{source} is not an unsigned-byte idx file: replace it with the published MNIST file")
    ndims = data[3]
    header_size = 4 + 4 * ndims
    if len(data) < header_size:
        raise MnistError(f"{source} ends inside its idx header: replace it with the published MNIST file")
    dims = struct.unpack(f">{ndims}I", data[4:header_size])
    array = IdxArray(dims, data[header_size:])
    if len(array.payload) != array.count * array.item_size:
        raise MnistError(
            f"{source} holds {len(array.payload)} data bytes but its header promises "
            f"{array.count * array.item_size}: the file is truncated; replace it with the published MNIST file"
        )
    return array


def read_idx_gz(path: Path) -> IdxArray:
    require_file(path)
    try:
        with gzip.open(path, "rb") as stream:
            data = stream.read()
    except (OSError, EOFError, zlib.error) as error:
        raise MnistError(f"{path} is not a readable gzip file ({error}): replace it with the published MNIST file")
    return parse_idx(data, path)


def first_items(array: IdxArray, k: int) -> IdxArray:
    return IdxArray((k,) + array.dims[1:], array.payload[: k * array.item_size])


def chosen_items(array: IdxArray, indices: list[int]) -> IdxArray:
    size = array.item_size
    payload = b"".join(array.payload[index * size : (index + 1) * size] for index in indices)
    return IdxArray((len(indices),) + array.dims[1:], payload)


def encode_idx(array: IdxArray) -> bytes:
    header = bytes((0, 0, UNSIGNED_BYTE, len(array.dims))) + struct.pack(f">{len(array.dims)}I", *array.dims)
    return header + array.payload


def write_atomically(path: Path, data: bytes) -> None:
    # A reader never sees half a file, even if this process is killed mid-write.
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def gzip_bytes(data: bytes) -> bytes:
    # mtime=0 keeps the output identical from run to run.
    return gzip.compress(data, mtime=0)


def write_subset(
    src_dir: str | os.PathLike, dst_dir: str | os.PathLike, k: int, indices: list[int] | None = None
) -> dict[str, Path]:
    """Write gzip'd t10k files holding only the first k images and labels; return their paths by name.

    indices, when given, picks which images (and in which order) instead of the first k.
    """
    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    require_folder(src_dir)
    images = read_idx_gz(src_dir / IMAGES_FILE)
    labels = read_idx_gz(src_dir / LABELS_FILE)
    if images.count != labels.count:
        raise MnistError(
            f"{src_dir} has {images.count} images but {labels.count} labels: the two files do not belong "
            f"together; replace both with the published MNIST test files"
        )
    if not 1 <= k <= images.count:
        raise MnistError(f"cannot take {k} images from {src_dir}: it holds {images.count}; ask for 1 to {images.count}")
    if indices is not None and (len(indices) != k or not all(0 <= index < images.count for index in indices)):
        raise MnistError(f"cannot take images {indices[:5]}... from {src_dir}: give {k} indices below {images.count}")
    dst_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, array in ((IMAGES_FILE, images), (LABELS_FILE, labels)):
        path = dst_dir / name
        chosen = first_items(array, k) if indices is None else chosen_items(array, indices)
        write_atomically(path, gzip_bytes(encode_idx(chosen)))
        written[name] = path
    return written


def raw_folder(dataroot: str | os.PathLike) -> Path:
    """Where torchvision.datasets.MNIST(root=dataroot) looks for its files."""
    return Path(dataroot) / "MNIST" / "raw"


def stage_for_torchvision(src_dir: str | os.PathLike, dataroot: str | os.PathLike) -> Path:
    """Lay the test split out so MNIST(root=dataroot, train=False) loads it without downloading."""
    src_dir = Path(src_dir)
    require_folder(src_dir)
    raw = raw_folder(dataroot)
    raw.mkdir(parents=True, exist_ok=True)
    for name in (IMAGES_FILE, LABELS_FILE):
        # Parsed rather than copied blindly, so a broken file fails here and not inside torchvision.
        array = read_idx_gz(src_dir / name)
        write_atomically(raw / name.removesuffix(".gz"), encode_idx(array))
    for name in TRAIN_PLACEHOLDERS:
        (raw / name).touch()
    return raw


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog or "python -m dcgan_harness.mnist", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser("verify", help="check the t10k files against their published MD5 sums")
    verify.add_argument("folder")
    subset = commands.add_parser("subset", help="write the first K test images and labels to another folder")
    subset.add_argument("src_dir")
    subset.add_argument("dst_dir")
    subset.add_argument("k", type=int)
    stage = commands.add_parser("stage", help="lay the test files out as torchvision's MNIST expects")
    stage.add_argument("src_dir")
    stage.add_argument("dataroot")
    return parser


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        if args.command == "verify":
            verify_test_files(args.folder)
            print(f"{args.folder}: MNIST test files match their published MD5 sums")
        elif args.command == "subset":
            write_subset(args.src_dir, args.dst_dir, args.k)
            print(f"{args.dst_dir}: first {args.k} MNIST test images and labels")
        else:
            print(f"{stage_for_torchvision(args.src_dir, args.dataroot)}: ready for torchvision MNIST (test split)")
    except MnistError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"error: cannot write {error.filename or 'the output'}: {error.strerror}; pick a folder you can write to", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
