"""What each submission's VM clones: the app, with MNIST images chosen for it alone.

The images are a random choice from the MNIST test split made when the
submission's run starts (fast mode: 256 of the 10,000; full mode: all of
them in a random order), so the losses of an honest run cannot be known
before it; the grader's own short run on the same copy gives them
(reference.py). Each submission's copy is served under its own path of the
grading run's git server and removed with the submission.
"""

from __future__ import annotations

import random
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

from .. import mnist
from ..localcloud import ServedApp, progress, serve_app
from ..localcloud.gitserver import served_tree
from ..localcloud.images import project_labels

SERVED_NAME = "Distributed-DCGAN"
REFERENCE_REPOSITORY = "dcgan-reference"
MNIST_TEST_IMAGES = 10_000


@dataclass
class StagedApp:
    """A submission's own copy of the app, where the grader's reference run finds it too."""

    folder: Path
    app_dir: Path
    served: ServedApp
    # Which MNIST test images, in order: recorded so a result can be reproduced.
    choice_seed: int
    images: int
    # path -> blob id of every file of the served commit, as the git server holds it.
    tree: dict[str, str]

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def prepare_app(app_dir: Path, mnist_dir: Path, images: int, work: Path, indices: list[int] | None = None) -> Path:
    """A copy of the app with MNIST inside, where a `--dataroot data` run finds it.

    The stand-in app also copies these files to any other --dataroot when
    asked to --download, as the real download would.
    """
    copy = work / SERVED_NAME
    shutil.copytree(app_dir, copy, ignore=shutil.ignore_patterns(".git", "__pycache__", "*.pyc", "data", "output"))
    mnist.verify_test_files(mnist_dir)
    source = mnist_dir
    if images < MNIST_TEST_IMAGES or indices is not None:
        source = work / "mnist-subset"
        mnist.write_subset(mnist_dir, source, images, indices)
    mnist.stage_for_torchvision(source, copy / "data")
    return copy


def image_choice(seed: int, images: int) -> list[int]:
    """`images` of the MNIST test images in a random order that the seed fixes."""
    return random.Random(seed).sample(range(MNIST_TEST_IMAGES), images)


def stage_submission_app(client, app_dir: Path, mnist_dir: Path, images: int, grading_id: str, run_id: str) -> StagedApp:
    seed = secrets.randbits(63)
    folder = Path(tempfile.mkdtemp(prefix=f"dcgan-grade-{run_id}-"))
    try:
        copy = prepare_app(app_dir, mnist_dir, images, folder, image_choice(seed, images))
        name = f"{run_id}/{SERVED_NAME}"
        served = serve_app(copy, grading_id, name=name, client=client)
        tree = served_tree(client, grading_id, name, served.commit)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return StagedApp(folder, copy, served, seed, images, tree)


def build_reference_image(client, app_dir: Path, commit: str) -> str | None:
    """The served Dockerfile built on this machine, for the grader's own runs; None when it cannot be.

    Built once per grading run from the grader's copy, so the reference runs
    in the environment the app asks for, not in whatever a VM built.
    """
    tag = f"{REFERENCE_REPOSITORY}:{commit[:12]}"
    try:
        client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    try:
        client.images.build(path=str(app_dir), tag=tag, rm=True, labels=project_labels("reference-image"))
    except (docker.errors.BuildError, docker.errors.APIError) as error:
        progress(f"grade: the app's Dockerfile does not build here ({str(error).splitlines()[0][:160]});"
                 " the grader's own runs use the local cloud's runtime image")
        return None
    return tag
