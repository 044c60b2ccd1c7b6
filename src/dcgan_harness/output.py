"""Reading the standard output of dist_dcgan.py (output.txt) and judging whether the run finished.

The app prints, in order: its argparse namespace, ``Rank: r. World Size: w``,
``Dataset <name> loaded``, one line per training iteration and one
``[rank: r] Epoch e took: s seconds`` line per epoch.  Anything else in the
file (warnings, launcher noise, prefixes added by log collectors) is ignored.

    python -m dcgan_harness.output resultados/compute01/output.txt
"""

from __future__ import annotations

import argparse
import ast
import math
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

# Python formats non-finite floats as nan, inf and -inf; they must still parse.
NUMBER = r"[-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|nan|inf)"

NAMESPACE_RE = re.compile(r"(Namespace\(.*\))\s*$")
RANK_RE = re.compile(r"Rank: (\d+)\. World Size: (\d+)")
DATASET_RE = re.compile(r"Dataset (\S+) loaded")
ITERATION_RE = re.compile(
    r"\[epoch: (\d+)/(\d+)\]\[iteration: (\d+)/(\d+)\]\[rank: (\d+)\] "
    rf"Loss_D: ({NUMBER}), Loss_G: ({NUMBER}), D\(x\): ({NUMBER}), "
    rf"D\(G\(z\)\): ({NUMBER}) / ({NUMBER}), iteration time: ({NUMBER})s",
    re.IGNORECASE,
)
EPOCH_RE = re.compile(rf"\[rank: (\d+)\] Epoch (\d+) took: ({NUMBER}) seconds", re.IGNORECASE)

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


def parse_line(result: RunOutput, line: str, line_number: int) -> None:
    # Iteration and epoch lines come first: they are by far the most common.
    if match := ITERATION_RE.search(line):
        result.iterations.append(iteration_from_match(match, line_number))
    elif match := EPOCH_RE.search(line):
        result.epoch_times[(int(match[1]), int(match[2]))] = float(match[3])
    elif match := RANK_RE.search(line):
        result.rank_lines.append((int(match[1]), int(match[2])))
    elif match := DATASET_RE.search(line):
        result.datasets_loaded.append(match[1])
    elif (match := NAMESPACE_RE.search(line)) and result.namespace_line is None:
        result.namespace_line = match[1]
        result.args = parse_namespace_args(match[1])
    else:
        result.ignored_lines += 1


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


def rank_problems(result: RunOutput, world_size: int, ranks: list[int] | None) -> list[str]:
    if not result.rank_lines:
        return ["no 'Rank: r. World Size: w' line: the process group never came up"]
    problems = []
    for rank, size in sorted(set(result.rank_lines)):
        if size != world_size:
            problems.append(f"'Rank: {rank}. World Size: {size}' but the run was meant to have world size {world_size}")
        if not 0 <= rank < world_size:
            problems.append(f"rank {rank} is outside 0..{world_size - 1}")
    for rank in ranks or []:
        if rank not in result.ranks:
            problems.append(f"no 'Rank: {rank}. World Size: {world_size}' line")
    return problems


def iteration_count_problems(records: list[Iteration], rank: int, epoch: int) -> list[str]:
    where = f"rank {rank} epoch {epoch}"
    if not records:
        return [f"{where}: no iteration lines"]
    totals = sorted({it.num_iterations for it in records})
    if len(totals) > 1:
        return [f"{where}: iteration lines disagree on the number of iterations ({', '.join(map(str, totals))})"]
    total = totals[0]
    seen = Counter(it.iteration for it in records)
    problems = []
    missing = [i for i in range(total) if i not in seen]
    if missing:
        problems.append(f"{where}: missing iterations {format_ranges(missing)} of 0-{total - 1}")
    repeated = [i for i, count in seen.items() if count > 1 and i < total]
    if repeated:
        problems.append(f"{where}: iterations {format_ranges(repeated)} printed more than once")
    beyond = [i for i in seen if i >= total]
    if beyond:
        problems.append(f"{where}: iterations {format_ranges(beyond)} beyond the announced {total}")
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


def epoch_count_problems(result: RunOutput, epochs: int) -> list[str]:
    announced = sorted({it.num_epochs for it in result.iterations})
    return [
        f"iteration lines announce {n} epoch(s) but the run was meant to have {epochs}"
        for n in announced
        if n != epochs
    ]


def ranks_to_check(result: RunOutput, world_size: int, ranks: list[int] | None) -> list[int]:
    if ranks is not None:
        return sorted(set(ranks))
    if result.ranks:
        return result.ranks
    # Without a Rank line, fall back on what the training lines say.
    seen = sorted({it.rank for it in result.iterations} | {rank for rank, _ in result.epoch_times})
    if seen:
        return seen
    return [0] if world_size == 1 else []


def check_complete(
    result: RunOutput,
    world_size: int = 1,
    epochs: int = 1,
    ranks: list[int] | None = None,
) -> list[str]:
    """Everything that shows the run did not finish cleanly; empty when it did.

    ``ranks`` are the ranks this output must cover; by default, the ranks its
    own ``Rank:`` lines name (each node's output.txt holds just its own rank).
    """
    problems = []
    if result.namespace_line is None:
        problems.append("no 'Namespace(...)' line: the app did not start or its output was not captured")
    problems += rank_problems(result, world_size, ranks)
    if not result.dataset_loaded:
        problems.append("no 'Dataset <name> loaded' line: the dataset could not be loaded")
    problems += epoch_count_problems(result, epochs)
    checked = ranks_to_check(result, world_size, ranks)
    for rank in checked:
        for epoch in range(epochs):
            records = result.iterations_of(rank, epoch)
            problems += iteration_count_problems(records, rank, epoch)
            problems += non_finite_problems(records, rank, epoch)
            if (rank, epoch) not in result.epoch_times:
                problems.append(f"rank {rank} epoch {epoch}: no '[rank: {rank}] Epoch {epoch} took' line")
    stray = sorted({it.rank for it in result.iterations} - set(checked))
    if stray:
        problems.append(f"iteration lines from rank(s) {', '.join(map(str, stray))} that this output should not have")
    return problems


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


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog or "python -m dcgan_harness.output",
        description="Summarize a dist_dcgan.py output.txt and list what is missing.",
    )
    parser.add_argument("path", help="the output.txt to check")
    parser.add_argument(
        "--world-size",
        type=int,
        default=None,
        help="world size the run was started with (default: what its Rank line says)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs the run was asked for (default: num_epochs from its Namespace line, else 1)",
    )
    parser.add_argument(
        "--rank",
        type=int,
        action="append",
        dest="ranks",
        help="a rank this file must cover; repeat for several (default: the ranks it names)",
    )
    return parser


def default_world_size(result: RunOutput) -> int:
    return result.rank_lines[0][1] if result.rank_lines else 1


def default_epochs(result: RunOutput) -> int:
    epochs = (result.args or {}).get("num_epochs")
    return epochs if isinstance(epochs, int) else 1


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    options = build_parser(prog).parse_args(argv)
    try:
        result = parse_output_file(options.path)
    except OSError as error:
        print(
            f"{options.path}: cannot read it ({error.strerror or error})",
            file=sys.stderr,
        )
        return 2
    world_size = options.world_size if options.world_size is not None else default_world_size(result)
    epochs = options.epochs if options.epochs is not None else default_epochs(result)
    print(f"{options.path}:")
    for line in summarize(result):
        print(f"  {line}")
    problems = check_complete(result, world_size=world_size, epochs=epochs, ranks=options.ranks)
    for problem in problems:
        print(f"problem: {problem}")
    if not problems:
        print(f"complete: {epochs} epoch(s), world size {world_size}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
