"""The parts of verify's evidence that need no VM: reading a tree the
student wrote without trusting it, git's view of a clone copied out of it,
an image store, a Debian package's md5sums, the served Dockerfile's steps,
the grader's own run's arguments and the comparison of losses."""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import os
import stat
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from dcgan_harness.grade import outside, reference, staging
from dcgan_harness.grade.outside import SafeTree, VmFromOutside, blob_id, installed_version, package_md5sums
from dcgan_harness.grade.verify import dockerfile_steps
from dcgan_harness.output import Iteration

GIT_ENV = {
    **os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
}


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True, text=True).stdout


def vm_over(root: Path) -> VmFromOutside:
    return VmFromOutside(SafeTree(root), SafeTree.below(SafeTree(root), "var/lib/docker"), pids=[])


# --- Reading what the student wrote ---------------------------------------------------


def test_a_regular_file_is_read_and_what_is_not_is_refused(tmp_path):
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "file").write_text("ok")
    secret = tmp_path.parent / f"{tmp_path.name}-secret"
    secret.write_text("the grading machine's file")
    (tmp_path / "home" / "link").symlink_to(secret)
    (tmp_path / "linked-folder").symlink_to(tmp_path.parent)
    os.mkfifo(tmp_path / "home" / "fifo")
    (tmp_path / "home" / "big").write_bytes(b"x" * 2000)
    tree = SafeTree(tmp_path)
    assert tree.read("home/file") == b"ok"
    assert tree.read("home/link") is None
    assert tree.read(f"linked-folder/{secret.name}") is None
    started = time.monotonic()
    assert tree.read("home/fifo") is None
    assert time.monotonic() - started < 1
    assert tree.read("home/big", limit=1000) is None
    assert tree.read("home/missing") is None
    assert dict(tree.entries("home")) == {"file": "file", "link": "other", "fifo": "other", "big": "file"}


def test_dot_dot_is_never_followed(tmp_path):
    with pytest.raises(Exception, match="'..' is not followed"):
        SafeTree(tmp_path).read("home/../../etc/passwd")


def test_blob_ids_are_gits(tmp_path):
    (tmp_path / "f").write_bytes(b"some content\n")
    assert blob_id(b"some content\n") == git("hash-object", "f", cwd=tmp_path).strip()


# --- A clone seen from outside ---------------------------------------------------------


@pytest.fixture
def served(tmp_path) -> tuple[Path, str]:
    origin = tmp_path / "origin"
    origin.mkdir()
    git("init", "--quiet", "--initial-branch=main", cwd=origin)
    (origin / "dist_dcgan.py").write_text("print('train')\n")
    (origin / "Dockerfile").write_text("FROM base\n")
    git("add", ".", cwd=origin)
    git("commit", "--quiet", "-m", "app", cwd=origin)
    return origin, git("rev-parse", "HEAD", cwd=origin).strip()


def test_a_real_clone_holds_its_commit_and_files(tmp_path, served):
    origin, commit = served
    vm = tmp_path / "vm"
    git("clone", "--quiet", str(origin), str(vm / "home/ubuntu/app"), cwd=tmp_path)
    (vm / "home/ubuntu/app/output.txt").write_text("untracked files do not matter")
    seen = vm_over(vm)
    assert seen.clones() == ["home/ubuntu/app"]
    assert seen.head_of("home/ubuntu/app") == commit
    assert seen.holds_commit("home/ubuntu/app", commit) == (True, "")
    tree = {"dist_dcgan.py": blob_id(b"print('train')\n"), "Dockerfile": blob_id(b"FROM base\n")}
    assert seen.tree_differences("home/ubuntu/app", tree) == []
    (vm / "home/ubuntu/app/dist_dcgan.py").write_text("print('fake losses')\n")
    assert seen.tree_differences("home/ubuntu/app", tree) == ["dist_dcgan.py"]


def test_a_head_naming_the_commit_without_objects_is_no_clone(tmp_path, served):
    _, commit = served
    fake = tmp_path / "vm/home/ubuntu/app/.git"
    (fake / "objects").mkdir(parents=True)
    (fake / "HEAD").write_text(commit + "\n")
    seen = vm_over(tmp_path / "vm")
    assert seen.head_of("home/ubuntu/app") == commit
    holds, why = seen.holds_commit("home/ubuntu/app", commit)
    assert not holds and "lacks the commit or objects it needs" in why


def test_alternates_cannot_lend_a_clone_the_graders_objects(tmp_path, served):
    origin, commit = served
    vm = tmp_path / "vm"
    git("clone", "--quiet", "--shared", str(origin), str(vm / "app"), cwd=tmp_path)
    assert (vm / "app/.git/objects/info/alternates").exists()
    holds, _ = vm_over(vm).holds_commit("app", commit)
    assert not holds


def test_the_students_git_config_never_reaches_the_graders_git(tmp_path, served):
    origin, commit = served
    vm = tmp_path / "vm"
    git("clone", "--quiet", str(origin), str(vm / "app"), cwd=tmp_path)
    marker = tmp_path / "ran"
    with open(vm / "app/.git/config", "a") as config:
        config.write(f"[core]\n\tfsmonitor = touch {marker}\n[alias]\n\trev-list = !touch {marker}\n")
    assert vm_over(vm).holds_commit("app", commit) == (True, "")
    assert not marker.exists()


def test_head_is_read_through_refs_and_packed_refs_and_a_fifo_is_nothing(tmp_path, served):
    origin, commit = served
    vm = tmp_path / "vm"
    git("clone", "--quiet", str(origin), str(vm / "app"), cwd=tmp_path)
    git("pack-refs", "--all", cwd=vm / "app")
    assert not (vm / "app/.git/refs/heads/main").exists()
    assert vm_over(vm).head_of("app") == commit
    os.mkfifo(vm / "app/.git/HEAD.fifo")
    (vm / "app/.git/HEAD").unlink()
    os.rename(vm / "app/.git/HEAD.fifo", vm / "app/.git/HEAD")
    started = time.monotonic()
    assert vm_over(vm).head_of("app") == ""
    assert time.monotonic() - started < 1


# --- The image store ----------------------------------------------------------------------


def image_store(root: Path, config: bytes, tamper: bool = False) -> str:
    digest = hashlib.sha256(config).hexdigest()
    store = root / "var/lib/docker/image/overlay2"
    (store / "imagedb/content/sha256").mkdir(parents=True)
    (store / "imagedb/content/sha256" / digest).write_bytes(config + (b" " if tamper else b""))
    repositories = {"Repositories": {"dist_dcgan": {"dist_dcgan:latest": f"sha256:{digest}"}}}
    (store / "repositories.json").write_text(json.dumps(repositories))
    return digest


def test_an_image_is_read_from_the_store_only_when_its_id_matches_its_config(tmp_path):
    config = json.dumps({"history": [{"created_by": "/bin/sh -c pip install torch"}], "rootfs": {"diff_ids": []}})
    digest = image_store(tmp_path / "good", config.encode())
    found = vm_over(tmp_path / "good").image_config("dist_dcgan:latest")
    assert found is not None and found[0] == f"sha256:{digest}" and found[1]["history"][0]["created_by"]
    image_store(tmp_path / "tampered", config.encode(), tamper=True)
    assert vm_over(tmp_path / "tampered").image_config("dist_dcgan:latest") is None
    assert vm_over(tmp_path / "good").image_config("other:latest") is None


def test_dockerfile_steps_join_continuations(tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("# comment\nFROM ubuntu:20.04 AS base\nRUN apt-get update \\\n    && apt-get install -y pip\n"
                          "ENV X=1\nrun pip install   torch\n")
    assert dockerfile_steps(dockerfile) == (["apt-get update && apt-get install -y pip", "pip install torch"], "ubuntu:20.04")


# --- Packages ---------------------------------------------------------------------------------


def ar_archive(members: dict[str, bytes]) -> bytes:
    data = b"!<arch>\n"
    for name, content in members.items():
        header = f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(content):<10}`\n".encode()
        data += header + content + (b"\n" if len(content) % 2 else b"")
    return data


def test_the_md5sums_come_from_the_package_in_the_cache(tmp_path):
    sums = b"0f98d335c5fbdfcf61dc43cbb0af2f68  usr/sbin/dockerd\n1234  usr/bin/docker\n"
    control = io.BytesIO()
    with tarfile.open(fileobj=control, mode="w") as archive:
        info = tarfile.TarInfo("./md5sums")
        info.size = len(sums)
        archive.addfile(info, io.BytesIO(sums))
    deb = ar_archive({"debian-binary": b"2.0\n", "control.tar.xz": lzma.compress(control.getvalue())})
    pool = tmp_path / "cache/debrep/pool/main/d/docker.io"
    pool.mkdir(parents=True)
    (pool / "docker.io_20.10.24+dfsg1-1+deb12u1+b6_amd64.deb").write_bytes(deb)
    found = package_md5sums(SafeTree(tmp_path / "cache"), "docker.io", "20.10.24+dfsg1-1+deb12u1+b6")
    assert found["/usr/sbin/dockerd"] == "0f98d335c5fbdfcf61dc43cbb0af2f68"
    assert package_md5sums(SafeTree(tmp_path / "cache"), "docker.io", "99.0") == {}


def test_the_installed_version_is_dpkgs(tmp_path):
    (tmp_path / "var/lib/dpkg").mkdir(parents=True)
    (tmp_path / "var/lib/dpkg/status").write_text(
        "Package: git\nStatus: install ok installed\nVersion: 1:2.39\n\n"
        "Package: docker.io\nStatus: deinstall ok config-files\nVersion: 20.10\n\n"
    )
    seen = vm_over(tmp_path)
    assert installed_version(seen, "git") == "1:2.39"
    assert installed_version(seen, "docker.io") is None


# --- The grader's own run -------------------------------------------------------------------


def test_the_reference_takes_only_the_arguments_it_knows_within_range():
    words = reference.reference_arguments({"batch_size": 64, "ngf": 16, "seed": 7, "dataroot": "/etc", "local_rank": 3})
    assert words[words.index("--batch_size") + 1] == "64" and words[words.index("--seed") + 1] == "7"
    assert "/etc" not in words and "--local_rank" not in words
    for bad in ({"batch_size": 10**6}, {"ngf": True}, {"lr": "0.1; rm -rf /"}, {"nz": 2.5}):
        with pytest.raises(reference.ReferenceError):
            reference.reference_arguments(bad)


def iteration(rank: int, step: int, loss_d: float, loss_g: float, epoch: int = 0) -> Iteration:
    return Iteration(epoch, 1, step, 2, rank, loss_d, loss_g, 0.5, 0.5, 0.5, 1.0, line_number=step)


def test_losses_are_compared_for_rank_zero_first_epoch_within_rounding():
    printed = reference.printed_losses(
        [iteration(1, 0, 9.0, 9.0), iteration(0, 1, 1.1666, 1.0494), iteration(0, 0, 1.4833, 1.0322)], 2
    )
    assert [p.iteration for p in printed] == [0, 1]
    expected = [reference.Losses(0, 1.4833, 1.0322), reference.Losses(1, 1.1665, 1.0494)]
    assert reference.mismatches(printed, expected) == []
    wrong = reference.mismatches(printed[:1] + [reference.Losses(1, 1.3863, 0.6931)], expected)
    assert len(wrong) == 1 and wrong[0].startswith("iteration 1: printed Loss_D 1.3863")
    assert reference.mismatches(printed[:1], expected) == ["iteration 1: not printed"]


def test_each_choice_of_images_is_its_own_and_reproducible():
    first, again, other = staging.image_choice(1, 256), staging.image_choice(1, 256), staging.image_choice(2, 256)
    assert first == again and first != other
    assert len(set(first)) == 256 and all(0 <= index < 10_000 for index in first)
    assert sorted(staging.image_choice(3, 10_000)) == list(range(10_000))


# --- What a hostile VM may hold -------------------------------------------------------------


def test_mounts_that_could_hang_a_reader_are_never_entered(tmp_path):
    mountinfo = (
        "22 1 0:21 / / rw - overlay overlay rw\n"
        "30 22 0:40 / /home/ubuntu/slow rw,nosuid - fuse.sshfs host:/ rw\n"
        "31 22 0:41 / /tmp rw - tmpfs tmpfs rw\n"
        "32 22 0:42 / /mnt/with\\040space rw - nfs4 server:/ rw\n"
    )
    avoid = outside.unsafe_mounts(mountinfo)
    assert avoid == {"home/ubuntu/slow", "mnt/with space"}
    (tmp_path / "home/ubuntu/slow").mkdir(parents=True)
    (tmp_path / "home/ubuntu/slow/output.txt").write_text("from a mount the grader must not enter")
    tree = SafeTree(tmp_path, avoid=avoid)
    assert tree.read("home/ubuntu/slow/output.txt") is None
    assert tree.files_named(("output.txt",)) == []


def test_a_device_where_a_file_should_be_is_looked_at_not_opened(tmp_path):
    os.mknod(tmp_path / "output.txt", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    assert SafeTree(tmp_path).read("output.txt") is None


def test_a_forged_tree_object_is_found_though_rev_list_would_miss_it(tmp_path, served):
    origin, commit = served
    vm = tmp_path / "vm"
    git("clone", "--quiet", str(origin), str(vm / "app"), cwd=tmp_path)
    git("repack", "-a", "-d", "--quiet", cwd=vm / "app")
    tree = git("rev-parse", "HEAD^{tree}", cwd=vm / "app").strip()
    blob = git("rev-parse", "HEAD:dist_dcgan.py", cwd=vm / "app").strip()
    # A loose object of the tree's name holding an empty tree, and the blob gone.
    for pack in (vm / "app/.git/objects/pack").glob("*"):
        pack.unlink()
    empty = subprocess.run(["git", "mktree"], input="", cwd=vm / "app", env=GIT_ENV, capture_output=True, text=True)
    empty_id = empty.stdout.strip()
    source = vm / "app/.git/objects" / empty_id[:2] / empty_id[2:]
    forged = vm / "app/.git/objects" / tree[:2] / tree[2:]
    forged.parent.mkdir(parents=True, exist_ok=True)
    forged.write_bytes(source.read_bytes())
    commit_object = subprocess.run(["git", "-C", str(origin), "cat-file", "commit", commit], capture_output=True).stdout
    written = subprocess.run(
        ["git", "hash-object", "-w", "-t", "commit", "--stdin"], input=commit_object, cwd=vm / "app", env=GIT_ENV,
        capture_output=True,
    )
    assert written.stdout.decode().strip() == commit and blob
    holds, why = vm_over(vm).holds_commit("app", commit)
    assert not holds and "lacks the commit or objects it needs" in why


def layer_store(root: Path, diff_ids: list[str], skip: int | None = None) -> None:
    chain = ""
    for number, diff_id in enumerate(diff_ids):
        chain = diff_id if not chain else "sha256:" + hashlib.sha256(f"{chain} {diff_id}".encode()).hexdigest()
        if number == skip:
            continue
        folder = root / "var/lib/docker/image/overlay2/layerdb/sha256" / chain.split(":", 1)[1]
        folder.mkdir(parents=True)
        (folder / "diff").write_text(diff_id)
        (folder / "cache-id").write_text(f"cache{number}")
        (root / f"var/lib/docker/overlay2/cache{number}/diff").mkdir(parents=True)


def test_an_image_counts_only_with_its_layers_in_the_store(tmp_path):
    diff_ids = ["sha256:" + hashlib.sha256(str(n).encode()).hexdigest() for n in range(3)]
    layer_store(tmp_path / "whole", diff_ids)
    assert vm_over(tmp_path / "whole").layers_present(diff_ids) == (True, "")
    layer_store(tmp_path / "forged", diff_ids, skip=1)
    present, why = vm_over(tmp_path / "forged").layers_present(diff_ids)
    assert not present and why == "its layer 2 of 3 is not in the VM's layer store"
