"""The grader's own short run of the DCGAN, to check the losses a submission printed.

With the same data, arguments and seed, the DCGAN prints the same Loss_D and
Loss_G to the four decimals it shows (measured on upstream's dist_dcgan.py
with 1 and 2 threads; the stand-in seeds the same way). Each submission
trains on its own random choice of MNIST images, staged by the grader and
unknown before its VM starts, so printed losses that match the grader's run
are evidence that the DCGAN trained on that data; a printed output.txt is not.

The run uses the grader's copy of the app and data, the runtime image of the
local cloud, no network and the submission's own hyper-parameters, taken from
its output.txt's argument line but checked against a short list of ranges.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path

import docker.errors

from ..errors import HarnessError
from ..localcloud.engine import remove_container
from ..output import ITERATION_RE

# Iterations the grader trains itself: enough that matching losses cannot be a
# lucky guess, few enough to cost seconds (both iterations of a fast run).
REFERENCE_ITERATIONS = 2
REFERENCE_TIMEOUT_S = 600
# Printed to 4 decimals; the same build on the same CPU repeats them exactly,
# so this allows only for rounding.
LOSS_TOLERANCE = 2e-3
CONTAINER_DIR = "/dcgan"
# The arguments a submission may choose, with what each may be; anything else
# keeps the script's default, so a namespace cannot smuggle options in.
ARGUMENT_RANGES = {
    "batch_size": (int, 1, 1024),
    "image_size": (int, 16, 128),
    "nz": (int, 1, 512),
    "ngf": (int, 1, 256),
    "ndf": (int, 1, 256),
    "lr": (float, 1e-6, 1.0),
    "beta1": (float, 0.0, 1.0),
    "seed": (int, 0, 2**31 - 1),
}


class ReferenceError(HarnessError):
    """The grader's own run could not be made; the message says why."""


@dataclass(frozen=True)
class Losses:
    iteration: int
    loss_d: float
    loss_g: float


def reference_arguments(namespace: dict) -> list[str]:
    """The script's command line for the grader's run, from a submission's printed arguments."""
    words = ["--dataset", "mnist", "--dataroot", "data", "--test_data", "--num_epochs", "1", "--max_workers", "1",
             "--out_folder", "/tmp/reference-output"]
    for name, (kind, low, high) in ARGUMENT_RANGES.items():
        if name not in namespace or namespace[name] is None:
            continue
        value = namespace[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ReferenceError(f"its printed {name}={value!r} is outside what the grader reruns ({low} to {high})")
        if kind is int and value != int(value):
            raise ReferenceError(f"its printed {name}={value!r} is not a whole number")
        words += [f"--{name}", repr(kind(value)) if kind is float else str(int(value))]
    return words


def printed_losses(records, count: int) -> list[Losses]:
    """The first iterations of rank 0's first epoch, as a submission printed them."""
    first = sorted((r for r in records if r.rank == 0 and r.epoch == 0), key=lambda r: r.iteration)
    return [Losses(r.iteration, r.loss_d, r.loss_g) for r in first[:count]]


def mismatches(printed: list[Losses], expected: list[Losses]) -> list[str]:
    """One line per iteration whose printed losses differ from the grader's run."""
    problems = []
    by_iteration = {losses.iteration: losses for losses in printed}
    for want in expected:
        got = by_iteration.get(want.iteration)
        if got is None:
            problems.append(f"iteration {want.iteration}: not printed")
            continue
        close = all(
            math.isclose(a, b, abs_tol=LOSS_TOLERANCE) for a, b in ((got.loss_d, want.loss_d), (got.loss_g, want.loss_g))
        )
        if not close:
            problems.append(
                f"iteration {want.iteration}: printed Loss_D {got.loss_d:.4f}, Loss_G {got.loss_g:.4f}; the DCGAN on"
                f" this data gives Loss_D {want.loss_d:.4f}, Loss_G {want.loss_g:.4f}"
            )
    return problems


def run_reference(
    client, runtime_image: str, app_dir: Path, arguments: list[str], count: int, name: str, labels: dict | None = None
) -> list[Losses]:
    """Train the grader's copy of the app until rank 0 has printed `count` iterations; their losses."""
    environment = {
        "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500",
        "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
    }
    # A run of an earlier, interrupted grading may have left one of this name.
    remove_container(client, name)
    try:
        container = client.containers.create(
            runtime_image,
            ["python", "dist_dcgan.py", *arguments],
            name=name,
            environment=environment,
            working_dir=CONTAINER_DIR,
            volumes={str(app_dir): {"bind": CONTAINER_DIR, "mode": "rw"}},
            network_mode="none",
            mem_limit="2g",
            pids_limit=256,
            labels=labels or {},
        )
    except docker.errors.APIError as error:
        raise ReferenceError(f"the engine refused the run: {error.explanation or error}") from None
    found: list[Losses] = []
    tail: list[str] = []
    timer = threading.Timer(REFERENCE_TIMEOUT_S, lambda: _kill(container))
    try:
        container.start()
        timer.start()
        for line in _lines(container.logs(stream=True, follow=True)):
            tail = (tail + [line])[-5:]
            match = ITERATION_RE.search(line)
            if match and int(match.group(5)) == 0 and int(match.group(1)) == 0:
                found.append(Losses(int(match.group(3)), float(match.group(6)), float(match.group(7))))
                if len(found) >= count:
                    break
    except docker.errors.APIError as error:
        raise ReferenceError(f"the engine refused the run: {error.explanation or error}") from None
    finally:
        timer.cancel()
        remove_container(client, name)
    if len(found) < count:
        raise ReferenceError(f"the grader's own run printed {len(found)} of {count} iterations: {' | '.join(tail)}")
    return found


def _lines(stream):
    pending = b""
    for chunk in stream:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.decode("utf-8", errors="replace")
    if pending:
        yield pending.decode("utf-8", errors="replace")


def _kill(container) -> None:
    try:
        container.kill()
    except Exception:  # noqa: BLE001 - it may have ended on its own
        pass
