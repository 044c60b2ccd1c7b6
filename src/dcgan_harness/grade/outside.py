"""What a VM holds, read on the grading machine with the grader's own code.

A student is root on the VM and may replace any of its programs (docker,
git, find, systemctl) or make them lie. So the evidence for a grade is read
from outside: the VM's root file system and its Docker storage as the
grading machine's engine keeps them, and the VM's processes as this machine
sees them. Every path is walked one component at a time without following a
link, and only regular files are read, bounded in size; walks are bounded
in entries and depth. A FIFO, a device or a link where a file should be is
simply not evidence.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import HarnessError

# Folders a clone cannot be in, or that are the system's own.
PRUNED = frozenset({"proc", "sys", "dev", "run", "boot", "usr/lib", "usr/share", "usr/include", "var/lib/docker",
                    "var/lib/dpkg", "var/lib/apt", "var/cache", "etc"})
MAX_WALK_ENTRIES = 300_000
MAX_WALK_DEPTH = 12
MAX_SMALL_FILE = 1 << 20
# A clone's objects, copied for the grader's git: the served repository is a few MB.
MAX_OBJECTS_BYTES = 64 << 20
GIT_MEMORY_BYTES = 1 << 30
GIT_TIMEOUT_S = 60
DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# File systems of a VM that answer at once; a mount of any other kind (FUSE,
# NFS, a loop device of the student's) could hang a reader and is not entered.
SAFE_FILESYSTEMS = frozenset({"overlay", "ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "zfs"})
MAX_CLONES_CHECKED = 3
MAX_PROGRAM_BYTES = 256 << 20


class EvidenceError(HarnessError):
    """The VM cannot be read from outside on this machine; the message says why."""


class SafeTree:
    """A folder of this machine that the VM writes, read without trusting anything in it.

    The root is opened once, so a VM that stops and whose pid is reused
    cannot turn the tree into another process's; mounts of the VM that a
    reader could hang on (FUSE, network file systems) are never entered.
    """

    def __init__(self, root: str | os.PathLike, inside: tuple[str, ...] = (), avoid: frozenset[str] = frozenset()):
        self.root = Path(root)
        # Folders below the root that every path starts with, each opened without following links.
        self.inside = inside
        # Paths, from the root, of mounts never entered.
        self.avoid = avoid
        try:
            # The root itself may be a link (/proc/<pid>/root is one, on purpose); nothing below it is followed.
            self._root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as error:
            raise EvidenceError(
                f"{self.root} cannot be read ({error.strerror}); the grader reads VMs from outside as root"
            ) from None

    def close(self) -> None:
        if self._root_fd >= 0:
            os.close(self._root_fd)
            self._root_fd = -1

    @classmethod
    def below(cls, tree: SafeTree, relative: str) -> SafeTree | None:
        """The same tree, narrowed to a folder of it; None when that is no folder."""
        if not tree.is_dir(relative):
            return None
        narrowed = cls.__new__(cls)
        narrowed.root, narrowed.avoid = tree.root, tree.avoid
        narrowed.inside = tree.inside + tuple(cls._parts(relative))
        narrowed._root_fd = os.dup(tree._root_fd)
        return narrowed

    def _open_dir(self, parts: list[str]) -> int:
        fd = os.dup(self._root_fd)
        walked: list[str] = []
        try:
            for part in [*self.inside, *parts]:
                walked.append(part)
                if "/".join(walked) in self.avoid:
                    raise OSError(f"{'/'.join(walked)} is a mount the grader does not enter")
                child = os.open(part, DIRECTORY_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = child
        except OSError:
            os.close(fd)
            raise
        return fd

    @staticmethod
    def _parts(relative: str) -> list[str]:
        parts = [part for part in relative.strip("/").split("/") if part and part != "."]
        if ".." in parts:
            raise EvidenceError(f"{relative}: '..' is not followed")
        return parts

    def read(self, relative: str, limit: int = MAX_SMALL_FILE) -> bytes | None:
        """The file's bytes; None when it is missing, not a regular file, behind a link, or over the limit."""
        parts = self._parts(relative)
        if not parts or "/".join([*self.inside, *parts]) in self.avoid:
            return None
        try:
            folder = self._open_dir(parts[:-1])
        except OSError:
            return None
        try:
            # O_PATH opens nothing: a device or FIFO is looked at, never opened for reading.
            handle = os.open(parts[-1], os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
        except OSError:
            return None
        finally:
            os.close(folder)
        try:
            info = os.fstat(handle)
            if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
                return None
            fd = os.open(f"/proc/self/fd/{handle}", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        finally:
            os.close(handle)
        try:
            with os.fdopen(fd, "rb", closefd=False) as stream:
                data = stream.read(limit + 1)
            return data if len(data) <= limit else None
        finally:
            os.close(fd)

    def is_dir(self, relative: str) -> bool:
        try:
            os.close(self._open_dir(self._parts(relative)))
        except OSError:
            return False
        return True

    def entries(self, relative: str) -> list[tuple[str, str]]:
        """(name, kind) of a folder's entries, kind one of dir, file, other; links count as other."""
        try:
            fd = self._open_dir(self._parts(relative))
        except OSError:
            return []
        try:
            found = []
            with os.scandir(fd) as listing:
                for entry in listing:
                    if len(found) >= MAX_WALK_ENTRIES:
                        break
                    if entry.is_symlink():
                        kind = "other"
                    elif entry.is_dir(follow_symlinks=False):
                        kind = "dir"
                    elif entry.is_file(follow_symlinks=False):
                        kind = "file"
                    else:
                        kind = "other"
                    found.append((entry.name, kind))
            return found
        finally:
            os.close(fd)

    def files_below(self, relative: str, max_entries: int = MAX_WALK_ENTRIES) -> Iterator[str]:
        """Every regular file under a folder, relative to it, bounded in entries and depth."""
        seen = 0
        stack = [("", 0)]
        while stack:
            below, depth = stack.pop()
            for name, kind in self.entries(f"{relative}/{below}"):
                seen += 1
                if seen > max_entries:
                    return
                path = f"{below}/{name}".lstrip("/")
                if kind == "file":
                    yield path
                elif kind == "dir" and depth < MAX_WALK_DEPTH:
                    stack.append((path, depth + 1))

    def folders_named(self, name: str) -> list[str]:
        """Every folder with this name from the root down, not below another one; bounded."""
        return self._find(lambda entry, kind: kind == "dir" and entry == name)

    def files_named(self, names: tuple[str, ...]) -> list[str]:
        return self._find(lambda entry, kind: kind == "file" and entry in names)

    def _find(self, wanted) -> list[str]:
        found, seen = [], 0
        stack = [("", 0)]
        while stack:
            below, depth = stack.pop()
            for entry, kind in sorted(self.entries(below)):
                seen += 1
                if seen > MAX_WALK_ENTRIES:
                    return sorted(found)
                path = f"{below}/{entry}".lstrip("/")
                if path in PRUNED:
                    continue
                if wanted(entry, kind):
                    found.append(path)
                elif kind == "dir" and depth < MAX_WALK_DEPTH:
                    stack.append((path, depth + 1))
        return sorted(found)


def unsafe_mounts(mountinfo: str) -> frozenset[str]:
    """Mount points, from the VM's root, of every file system not known to answer at once."""
    avoid = set()
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        fstype = line.split(" - ", 1)[1].split()[0]
        point = fields[4].encode().decode("unicode_escape", errors="replace").strip("/")
        if point and fstype not in SAFE_FILESYSTEMS:
            avoid.add(point)
    return frozenset(avoid)


def blob_id(data: bytes) -> str:
    """The id git gives a file's content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class VmFromOutside:
    """A VM's root file system, its Docker storage and its processes, seen from this machine."""

    root: SafeTree
    docker: SafeTree | None
    pids: list[int]

    @classmethod
    def of(cls, machine) -> VmFromOutside:
        """The VM as its init process sees its files (every mount of the VM included), from this machine.

        machine: a target's Machine, which names the VM's processes as this machine numbers them.
        """
        pid = machine.init_pid()
        if not pid:
            raise EvidenceError(f"{machine.name} is not running")
        if not machine.owns(pid):
            raise EvidenceError(f"process {pid} is no longer {machine.name}'s")
        try:
            with open(f"/proc/{pid}/mountinfo") as mounts:
                avoid = unsafe_mounts(mounts.read())
        except OSError as error:
            raise EvidenceError(f"{machine.name}'s process {pid} cannot be read ({error.strerror}); grade as root") from None
        root = SafeTree(f"/proc/{pid}/root", avoid=avoid)
        docker = SafeTree.below(root, "var/lib/docker")
        return cls(root, docker, machine.pids())

    def close(self) -> None:
        self.root.close()
        if self.docker is not None:
            self.docker.close()

    # --- git ---------------------------------------------------------------------

    def clones(self) -> list[str]:
        """The folders holding a .git folder."""
        return [path[: -len("/.git")] for path in self.root.folders_named(".git") if path.endswith("/.git")]

    def head_of(self, clone: str) -> str:
        """The commit id HEAD names, read as git would; empty when there is none."""
        head = (self.root.read(f"{clone}/.git/HEAD", 4096) or b"").decode("ascii", "replace").strip()
        if not head.startswith("ref: "):
            return head if _is_sha(head) else ""
        ref = head[len("ref: "):].strip()
        if ref.startswith("refs/") and ".." not in ref:
            loose = (self.root.read(f"{clone}/.git/{ref}", 4096) or b"").decode("ascii", "replace").strip()
            if _is_sha(loose):
                return loose
        packed = (self.root.read(f"{clone}/.git/packed-refs") or b"").decode("ascii", "replace")
        for line in packed.splitlines():
            sha, _, name = line.partition(" ")
            if name.strip() == ref and _is_sha(sha):
                return sha
        return ""

    def tree_differences(self, clone: str, expected: dict[str, str]) -> list[str]:
        """The tracked files whose content in the work tree is not the commit's (path -> blob id)."""
        differing = []
        for path, blob in sorted(expected.items()):
            data = self.root.read(f"{clone}/{path}", 256 << 20)
            if data is None or blob_id(data) != blob:
                differing.append(path)
        return differing

    def holds_commit(self, clone: str, commit: str) -> tuple[bool, str]:
        """Whether the clone's object store holds the commit and every object it reaches, by the grader's git.

        The objects are copied out as plain files, with a config of the
        grader's own: nothing of the student's .git/config or hooks reaches git.
        """
        with tempfile.TemporaryDirectory(prefix="dcgan-clone-") as tmp:
            copy = Path(tmp) / "repo.git"
            size = 0
            for relative in self.root.files_below(f"{clone}/.git/objects"):
                if relative.startswith("info/"):
                    continue  # alternates would point git at other object stores
                data = self.root.read(f"{clone}/.git/objects/{relative}", MAX_OBJECTS_BYTES)
                if data is None:
                    continue
                size += len(data)
                if size > MAX_OBJECTS_BYTES:
                    return False, f"its objects exceed {MAX_OBJECTS_BYTES >> 20} MiB"
                target = copy / "objects" / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            (copy / "refs").mkdir(parents=True, exist_ok=True)
            (copy / "objects").mkdir(parents=True, exist_ok=True)
            (copy / "HEAD").write_text(f"{commit}\n")
            (copy / "config").write_text("[core]\n\trepositoryformatversion = 0\n\tbare = true\n")
            environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp, "GIT_CONFIG_NOSYSTEM": "1",
                           "GIT_CONFIG_GLOBAL": os.devnull, "GIT_DIR": str(copy)}
            # fsck re-hashes every object and follows every link from the commit:
            # a forged tree or a missing blob is found, which rev-list misses.
            limits = ["prlimit", f"--as={GIT_MEMORY_BYTES}", f"--cpu={GIT_TIMEOUT_S}", "--"] if _has_prlimit() else []
            for command in (["cat-file", "-e", f"{commit}^{{commit}}"], ["fsck", "--strict", "--no-dangling", "--no-progress"]):
                try:
                    checked = subprocess.run(
                        [*limits, "git", *command], env=environment, capture_output=True, text=True,
                        timeout=GIT_TIMEOUT_S,
                    )
                except subprocess.TimeoutExpired:
                    return False, f"git could not read its objects within {GIT_TIMEOUT_S} s"
                if checked.returncode != 0:
                    said = (checked.stderr.strip().splitlines() or ["objects missing"])[-1][:160]
                    return False, f"its object store lacks the commit or objects it needs ({said})"
            return True, ""

    # --- Docker storage -------------------------------------------------------------

    def image_config(self, reference: str) -> tuple[str, dict] | None:
        """The image id and configuration a tag names in the VM's Docker storage; None when none."""
        import json

        if self.docker is None:
            return None
        for driver, kind in self.docker.entries("image"):
            if kind != "dir":
                continue
            raw = self.docker.read(f"image/{driver}/repositories.json")
            try:
                repositories = json.loads(raw or b"{}").get("Repositories") or {}
            except ValueError:
                continue
            repository = reference.split(":", 1)[0]
            tags = repositories.get(repository) or {}
            image_id = tags.get(reference if ":" in reference else f"{reference}:latest")
            if not isinstance(image_id, str) or not image_id.startswith("sha256:"):
                continue
            digest = image_id.split(":", 1)[1]
            content = self.docker.read(f"image/{driver}/imagedb/content/sha256/{digest}")
            # The id is the digest of the configuration: a file edited by hand no longer matches it.
            if content is None or hashlib.sha256(content).hexdigest() != digest:
                continue
            try:
                return image_id, json.loads(content)
            except ValueError:
                continue
        return None

    def layers_present(self, diff_ids: list[str]) -> tuple[bool, str]:
        """Whether every layer of an image is in the VM's layer store, with its content folder.

        A configuration alone can be written by hand; the store keeps each
        layer under its chain id, with the diff id it holds and the folder
        of its files.
        """
        if self.docker is None:
            return False, "the VM has no Docker storage"
        for driver, kind in self.docker.entries("image"):
            if kind != "dir":
                continue
            chain = ""
            for number, diff_id in enumerate(diff_ids):
                chain = diff_id if not chain else "sha256:" + hashlib.sha256(f"{chain} {diff_id}".encode()).hexdigest()
                folder = f"image/{driver}/layerdb/sha256/{chain.split(':', 1)[-1]}"
                recorded = (self.docker.read(f"{folder}/diff", 4096) or b"").decode("ascii", "replace").strip()
                cache_id = (self.docker.read(f"{folder}/cache-id", 4096) or b"").decode("ascii", "replace").strip()
                if recorded != diff_id or not cache_id or not self.docker.is_dir(f"{driver}/{cache_id}/diff"):
                    return False, f"its layer {number + 1} of {len(diff_ids)} is not in the VM's layer store"
            return True, ""
        return False, "the VM's Docker storage has no image store"

    # --- Processes --------------------------------------------------------------------

    def program_name(self, pid: int) -> str:
        try:
            return os.path.basename(os.readlink(f"/proc/{pid}/exe"))
        except OSError:
            return ""


def _has_prlimit() -> bool:
    import shutil

    return shutil.which("prlimit") is not None


def _is_sha(text: str) -> bool:
    return len(text) == 40 and all(c in "0123456789abcdef" for c in text)


# --- Packages ----------------------------------------------------------------------------


def installed_version(vm: VmFromOutside, package: str) -> str | None:
    """The version dpkg records as installed, from the VM's status file; None when not installed."""
    status = (vm.root.read("var/lib/dpkg/status", 64 << 20) or b"").decode("utf-8", "replace")
    for stanza in status.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in stanza.splitlines() if ": " in line and not line.startswith(" ")
        )
        if fields.get("Package") == package and fields.get("Status", "").endswith(" installed"):
            return fields.get("Version")
    return None


def package_md5sums(cache: SafeTree, package: str, version: str) -> dict[str, str]:
    """path -> md5 of a package's files, from the .deb the grader's apt cache fetched from Debian.

    The VM's own /var/lib/dpkg/info/*.md5sums is the student's to rewrite;
    the cache's copy of the package is not.
    """
    import io
    import lzma
    import tarfile

    file_version = version.split(":", 1)[-1]
    wanted = f"{package}_{file_version}_"
    # Only where the cache keeps what it fetched from Debian's own archives: a
    # VM may make it fetch a file of that name from any other host, which it
    # keeps under that host's name.
    candidates = [
        f"{backend}/pool/{path}" for backend in DEBIAN_BACKENDS for path in cache.files_below(f"{backend}/pool")
    ]
    for path in candidates:
        name = path.rsplit("/", 1)[-1]
        if not (name.startswith(wanted) and name.endswith(".deb")):
            continue
        deb = cache.read(path, 128 << 20)
        if deb is None:
            continue
        control = _ar_member(deb, "control.tar")
        if control is None:
            continue
        name_of_member, data = control
        try:
            if name_of_member.endswith(".xz"):
                data = lzma.LZMADecompressor().decompress(data, max_length=MAX_CONTROL_BYTES)
            elif name_of_member.endswith(".gz"):
                import zlib

                data = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data, MAX_CONTROL_BYTES)
        except (lzma.LZMAError, ValueError, EOFError):
            continue
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
                member = next((m for m in archive.getmembers() if m.name.lstrip("./") == "md5sums"), None)
                handle = archive.extractfile(member) if member is not None else None
                text = handle.read().decode("utf-8", "replace") if handle else ""
        except tarfile.TarError:
            continue
        sums = {}
        for line in text.splitlines():
            digest, _, file = line.partition("  ")
            if digest and file:
                sums["/" + file.strip()] = digest
        return sums
    return {}


DEBIAN_BACKENDS = ("debrep", "secdeb")
# A package's control archive is kilobytes; its md5sums file is in it.
MAX_CONTROL_BYTES = 16 << 20


def _ar_member(archive: bytes, prefix: str) -> tuple[str, bytes] | None:
    """The first member of a Debian ar archive whose name starts with prefix."""
    if not archive.startswith(b"!<arch>\n"):
        return None
    offset = 8
    while offset + 60 <= len(archive):
        header = archive[offset : offset + 60]
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        try:
            size = int(header[48:58].decode("ascii").strip())
        except ValueError:
            return None
        start = offset + 60
        if name.startswith(prefix):
            return name, archive[start : start + size]
        offset = start + size + (size % 2)
    return None


def md5_of_program(pid: int) -> str:
    try:
        if os.stat(f"/proc/{pid}/exe").st_size > MAX_PROGRAM_BYTES:
            return ""
        with open(f"/proc/{pid}/exe", "rb") as program:
            digest = hashlib.md5()  # noqa: S324 - compared with dpkg's own md5sums, not used for security alone
            for chunk in iter(lambda: program.read(1 << 20), b""):
                digest.update(chunk)
            return digest.hexdigest()
    except OSError:
        return ""
