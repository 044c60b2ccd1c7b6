"""Reading the standard output of dist_dcgan.py (output.txt) and judging whether the run finished.

The app prints, in order: its argparse namespace, ``Rank: r. World Size: w``,
``Dataset <name> loaded``, one line per training iteration and one
``[rank: r] Epoch e took: s seconds`` line per epoch.  Anything else in the
file (warnings, launcher noise, prefixes added by log collectors) is ignored,
except a Python traceback, which always means trouble.

What a complete run looks like comes from the caller (``Expectations``:
epochs, world size, ranks, iterations per epoch, dataset), never from the
file itself, so an output cannot vouch for itself.

    dcgan-harness parse resultados/compute01/output.txt
"""

from __future__ import annotations

import ast
import math
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

# Python formats non-finite floats as nan, inf and -inf; they must still parse.
NUMBER = r"[-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|nan|inf)"

RANK_RE = re.compile(r"Rank: (\d+)\. World Size: (\d+)")
DATASET_RE = re.compile(r"Dataset (\S+) loaded")
ITERATION_RE = re.compile(
    r"\[epoch: (\d+)/(\d+)\]\[iteration: (\d+)/(\d+)\]\[rank: (\d+)\] "
    rf"Loss_D: ({NUMBER}), Loss_G: ({NUMBER}), D\(x\): ({NUMBER}), "
    rf"D\(G\(z\)\): ({NUMBER}) / ({NUMBER}), iteration time: ({NUMBER})s",
    re.IGNORECASE,
)
EPOCH_RE = re.compile(rf"\[rank: (\d+)\] Epoch (\d+) took: ({NUMBER}) seconds", re.IGNORECASE)
TRACEBACK_RE = re.compile(r"Traceback \(most recent call last\):")
# The course's data: the MNIST test split, 10,000 images, at batch 128.
COURSE_IMAGES = 10_000
COURSE_BATCH_SIZE = 128

# What a diverged run shows first; the iteration time is not a training value.
TRAINING_VALUES = (
    ("loss_d", "Loss_D"),
    ("loss_g", "Loss_G"),
    ("d_x", "D(x)"),
    ("d_g_z1", "D(G(z)) before the G step"),
    ("d_g_z2", "D(G(z)) after the G step"),
)


@dataclass(frozen=True)
class Iteration:
    epoch: int
    num_epochs: int
    iteration: int
    num_iterations: int
    rank: int
    loss_d: float
    loss_g: float
    d_x: float
    d_g_z1: float
    d_g_z2: float
    iteration_time: float
    line_number: int


@dataclass
class RunOutput:
    namespace_line: str | None = None
    # None when the namespace line is absent or not valid Python call syntax.
    args: dict | None = None
    # (rank, world size) for every "Rank: r. World Size: w" line.
    rank_lines: list[tuple[int, int]] = field(default_factory=list)
    datasets_loaded: list[str] = field(default_factory=list)
    iterations: list[Iteration] = field(default_factory=list)
    # (rank, epoch) -> seconds.
    epoch_times: dict[tuple[int, int], float] = field(default_factory=dict)
    # Every epoch line as (rank, epoch, line number), repeats included.
    epoch_lines: list[tuple[int, int, int]] = field(default_factory=list)
    # Line numbers of "Traceback (most recent call last):".
    tracebacks: list[int] = field(default_factory=list)
    ignored_lines: int = 0

    @property
    def dataset_loaded(self) -> bool:
        return bool(self.datasets_loaded)

    @property
    def ranks(self) -> list[int]:
        return sorted({rank for rank, _ in self.rank_lines})

    def iterations_of(self, rank: int, epoch: int) -> list[Iteration]:
        return [it for it in self.iterations if it.rank == rank and it.epoch == epoch]


def parse_namespace_args(line: str) -> dict | None:
    """Keyword arguments of ``Namespace(...)``; values that are not literals keep their source text."""
    try:
        call = ast.parse(line, mode="eval").body
    except SyntaxError:
        return None
    if not isinstance(call, ast.Call) or any(kw.arg is None for kw in call.keywords):
        return None
    args = {}
    for keyword in call.keywords:
        try:
            args[keyword.arg] = ast.literal_eval(keyword.value)
        except ValueError:
            # e.g. PosixPath('data'): still worth showing, just not as a value.
            args[keyword.arg] = ast.get_source_segment(line, keyword.value)
    return args


def iteration_from_match(match: re.Match, line_number: int) -> Iteration:
    epoch, num_epochs, iteration, num_iterations, rank = (int(g) for g in match.groups()[:5])
    values = [float(g) for g in match.groups()[5:]]
    return Iteration(
        epoch,
        num_epochs,
        iteration,
        num_iterations,
        rank,
        *values,
        line_number=line_number,
    )


# The app's longest line is its Namespace(...), under 1 KiB; a longer line is
# not one of its lines, and the regular expressions need not read it.
MAX_LINE_CHARS = 64 * 1024
MAX_NAMESPACE_CHARS = 4096


def parse_line(result: RunOutput, line: str, line_number: int) -> None:
    if len(line) > MAX_LINE_CHARS:
        result.ignored_lines += 1
        return
    # Iteration and epoch lines come first: they are by far the most common.
    if match := ITERATION_RE.search(line):
        result.iterations.append(iteration_from_match(match, line_number))
    elif match := EPOCH_RE.search(line):
        result.epoch_times[(int(match[1]), int(match[2]))] = float(match[3])
        result.epoch_lines.append((int(match[1]), int(match[2]), line_number))
    elif match := RANK_RE.search(line):
        result.rank_lines.append((int(match[1]), int(match[2])))
    elif match := DATASET_RE.search(line):
        result.datasets_loaded.append(match[1])
    elif (namespace := namespace_in(line)) and result.namespace_line is None:
        result.namespace_line = namespace
        result.args = parse_namespace_args(namespace) if len(namespace) <= MAX_NAMESPACE_CHARS else None
    else:
        if TRACEBACK_RE.search(line):
            result.tracebacks.append(line_number)
        result.ignored_lines += 1


def namespace_in(line: str) -> str | None:
    """The `Namespace(...)` that ends a line, found without a regular expression that backtracks."""
    start = line.find("Namespace(")
    if start < 0:
        return None
    candidate = line[start:].rstrip()
    return candidate if candidate.endswith(")") else None


def parse_output(text: str) -> RunOutput:
    result = RunOutput()
    for line_number, line in enumerate(text.splitlines(), start=1):
        parse_line(result, line, line_number)
    return result


def parse_output_file(path: str | Path) -> RunOutput:
    # A run killed mid-write can leave a torn multibyte character.
    return parse_output(Path(path).read_text(encoding="utf-8", errors="replace"))


def format_ranges(numbers: list[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> '0-2, 5, 7-8'; keeps a truncated run's problem to one readable line."""
    parts = []
    start = previous = None
    for number in sorted(numbers):
        if previous is not None and number == previous + 1:
            previous = number
            continue
        if start is not None:
            parts.append(f"{start}-{previous}" if previous != start else f"{start}")
        start = previous = number
    if start is not None:
        parts.append(f"{start}-{previous}" if previous != start else f"{start}")
    return ", ".join(parts)


# --- What a complete run looks like ----------------------------------------------------


@dataclass(frozen=True)
class Expectations:
    """What the caller knows about the run; the defaults are the course's configuration.

    ``ranks`` are the ranks this file must hold: None means every rank of
    the world (the file is the run's only output); a node's own output.txt in
    a multi-node run holds just its ranks, e.g. ``ranks=(1,)``.
    ``iterations`` or ``dataset`` None leaves that part unchecked.
    """

    epochs: int = 1
    world_size: int = 1
    ranks: tuple[int, ...] | None = None
    iterations: int | None = math.ceil(COURSE_IMAGES / COURSE_BATCH_SIZE)
    dataset: str | None = "mnist"

    def __post_init__(self):
        for name in ("epochs", "world_size", "iterations"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"expected {name} must be a whole number of at least 1, not {value!r}")
        if self.ranks is not None:
            object.__setattr__(self, "ranks", tuple(sorted(set(self.ranks))))
            outside = [rank for rank in self.ranks if not 0 <= rank < self.world_size]
            if outside:
                raise ValueError(f"expected ranks {outside} lie outside 0..{self.world_size - 1} of world size {self.world_size}")

    @classmethod
    def from_settings(
        cls, images: int, batch_size: int, world_size: int = 1, epochs: int = 1, ranks=None
    ) -> Expectations:
        """Expectations of a run over ``images`` images at ``batch_size`` per rank.

        Each rank trains on its DistributedSampler shard of
        ceil(images / world_size) images, so ceil(images / (world_size * batch_size))
        iterations per epoch.
        """
        if images < 1 or batch_size < 1 or world_size < 1:
            raise ValueError(f"images, batch size and world size must be at least 1, not {images}, {batch_size}, {world_size}")
        iterations = math.ceil(images / (world_size * batch_size))
        return cls(epochs=epochs, world_size=world_size, ranks=ranks, iterations=iterations)

    @property
    def expected_ranks(self) -> tuple[int, ...]:
        return self.ranks if self.ranks is not None else tuple(range(self.world_size))


COURSE = Expectations()


def namespace_problems(result: RunOutput, expected: Expectations) -> list[str]:
    if result.namespace_line is None:
        return ["no 'Namespace(...)' line: the app did not start or its output was not captured"]
    args = result.args or {}
    problems = []
    epochs = args.get("num_epochs")
    if isinstance(epochs, int) and epochs != expected.epochs:
        problems.append(f"the app was started with num_epochs={epochs} but the run was meant to have {expected.epochs}")
    dataset = args.get("dataset")
    if expected.dataset and isinstance(dataset, str) and dataset.lower() != expected.dataset.lower():
        problems.append(f"the app was started with dataset={dataset!r} but the run was meant to use {expected.dataset}")
    return problems


def rank_problems(result: RunOutput, expected: Expectations) -> list[str]:
    if not result.rank_lines:
        return ["no 'Rank: r. World Size: w' line: the process group never came up"]
    problems = []
    for rank, size in sorted(set(result.rank_lines)):
        if size != expected.world_size:
            problems.append(f"'Rank: {rank}. World Size: {size}' but the run was meant to have world size {expected.world_size}")
        elif rank not in expected.expected_ranks:
            problems.append(f"'Rank: {rank}. World Size: {size}' but this output should hold rank(s) {format_ranges(list(expected.expected_ranks))} only")
    for rank in expected.expected_ranks:
        if rank not in result.ranks:
            problems.append(f"no 'Rank: {rank}. World Size: {expected.world_size}' line")
    return problems


def dataset_problems(result: RunOutput, expected: Expectations) -> list[str]:
    if not result.dataset_loaded:
        return ["no 'Dataset <name> loaded' line: the dataset could not be loaded"]
    if expected.dataset is None:
        return []
    return [
        f"dataset {name} was loaded but the run was meant to use {expected.dataset}"
        for name in sorted(set(result.datasets_loaded))
        if name.lower() != expected.dataset.lower()
    ]


def epoch_count_problems(result: RunOutput, expected: Expectations) -> list[str]:
    announced = sorted({it.num_epochs for it in result.iterations})
    return [
        f"iteration lines announce {n} epoch(s) but the run was meant to have {expected.epochs}"
        for n in announced
        if n != expected.epochs
    ]


def iteration_count_problems(records: list[Iteration], rank: int, epoch: int, iterations: int | None) -> list[str]:
    where = f"rank {rank} epoch {epoch}"
    if not records:
        return [f"{where}: no iteration lines"]
    totals = sorted({it.num_iterations for it in records})
    if len(totals) > 1:
        return [f"{where}: iteration lines disagree on the number of iterations ({', '.join(map(str, totals))})"]
    problems = []
    if iterations is not None and totals[0] != iterations:
        problems.append(f"{where}: iteration lines announce {totals[0]} iterations but the run was meant to have {iterations}")
    total = iterations if iterations is not None else totals[0]
    seen = Counter(it.iteration for it in records)
    missing = [i for i in range(total) if i not in seen]
    if missing:
        problems.append(f"{where}: missing iterations {format_ranges(missing)} of 0-{total - 1}")
    repeated = [i for i, count in seen.items() if count > 1 and i < total]
    if repeated:
        problems.append(f"{where}: iterations {format_ranges(repeated)} printed more than once")
    beyond = [i for i in seen if i >= total]
    if beyond:
        problems.append(f"{where}: iterations {format_ranges(beyond)} beyond the {total} of an epoch")
    return problems


def non_finite_problems(records: list[Iteration], rank: int, epoch: int) -> list[str]:
    bad = [it for it in records if not all(math.isfinite(getattr(it, name)) for name, _ in TRAINING_VALUES)]
    if not bad:
        return []
    first = bad[0]
    values = ", ".join(
        f"{label}={getattr(first, name)}" for name, label in TRAINING_VALUES if not math.isfinite(getattr(first, name))
    )
    return [
        f"rank {rank} epoch {epoch}: {len(bad)} iteration(s) with non-finite values, first at iteration "
        f"{first.iteration} (line {first.line_number}: {values})"
    ]


def epoch_line_problems(result: RunOutput, rank: int, epoch: int) -> list[str]:
    lines = [number for r, e, number in result.epoch_lines if (r, e) == (rank, epoch)]
    if not lines:
        return [f"rank {rank} epoch {epoch}: no '[rank: {rank}] Epoch {epoch} took' line"]
    if len(lines) > 1:
        return [f"rank {rank} epoch {epoch}: the 'Epoch {epoch} took' line appears {len(lines)} times (lines {', '.join(map(str, lines))})"]
    return []


def stray_problems(result: RunOutput, expected: Expectations) -> list[str]:
    """Training lines of ranks or epochs this output should not hold."""
    ranks = set(expected.expected_ranks)
    problems = []
    stray_ranks = sorted({it.rank for it in result.iterations} - ranks)
    if stray_ranks:
        problems.append(f"iteration lines from rank(s) {', '.join(map(str, stray_ranks))} that this output should not have")
    stray_epochs = sorted({it.epoch for it in result.iterations if it.rank in ranks and it.epoch >= expected.epochs})
    if stray_epochs:
        problems.append(f"iteration lines of epoch(s) {format_ranges(stray_epochs)} beyond the {expected.epochs} the run was meant to have")
    for rank, epoch, number in result.epoch_lines:
        if rank not in ranks or epoch >= expected.epochs:
            problems.append(f"line {number}: '[rank: {rank}] Epoch {epoch} took' is not an epoch of rank(s) {format_ranges(sorted(ranks))}, epochs 0-{expected.epochs - 1}")
    return problems


def traceback_problems(result: RunOutput) -> list[str]:
    return [f"line {number}: a Python traceback: the app raised an exception" for number in result.tracebacks]


def check_complete(result: RunOutput, expected: Expectations = COURSE) -> list[str]:
    """Everything that shows the run did not finish as expected; empty when it did."""
    problems = namespace_problems(result, expected)
    problems += rank_problems(result, expected)
    problems += dataset_problems(result, expected)
    problems += epoch_count_problems(result, expected)
    for rank in expected.expected_ranks:
        for epoch in range(expected.epochs):
            records = result.iterations_of(rank, epoch)
            problems += iteration_count_problems(records, rank, epoch, expected.iterations)
            problems += non_finite_problems(records, rank, epoch)
            problems += epoch_line_problems(result, rank, epoch)
    problems += stray_problems(result, expected)
    problems += traceback_problems(result)
    return problems


def default_world_size(result: RunOutput) -> int:
    """The world size the file's own Rank line names; for summaries, never for judging."""
    return result.rank_lines[0][1] if result.rank_lines else 1


def summarize(result: RunOutput) -> list[str]:
    lines = []
    for rank, size in result.rank_lines:
        lines.append(f"rank {rank} of world size {size}")
    if result.datasets_loaded:
        lines.append(f"dataset {', '.join(result.datasets_loaded)} loaded")
    for rank, epoch in sorted({(it.rank, it.epoch) for it in result.iterations} | set(result.epoch_times)):
        lines.append(epoch_summary(result, rank, epoch))
    return lines or ["nothing recognisable in the output"]


def epoch_summary(result: RunOutput, rank: int, epoch: int) -> str:
    records = result.iterations_of(rank, epoch)
    text = f"rank {rank} epoch {epoch}:"
    if records:
        last = records[-1]
        mean_time = sum(it.iteration_time for it in records) / len(records)
        text += (
            f" {len(records)}/{last.num_iterations} iteration lines, mean iteration {mean_time:.3f}s,"
            f" last Loss_D {last.loss_d:.4f} Loss_G {last.loss_g:.4f}"
        )
    if (rank, epoch) in result.epoch_times:
        text += f" took {result.epoch_times[(rank, epoch)]:.1f}s"
    return text


if __name__ == "__main__":
    from .cli import main

    sys.exit(main(["parse", *sys.argv[1:]]))
