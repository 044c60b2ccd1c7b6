"""A report of the runs in a results folder: per-rank figures, a loss plot and a timing table.

configure.yaml fetches each host's output into ``<results>/<host>/output.txt``
(beside the sample images of the last epoch). A run is the set of
``<host>/output.txt`` files of one folder; a results folder may hold one run
directly or several runs in subfolders (``nodes-1/``, ``nodes-2/`` ...), and the
timing table then compares them with the 1-node run.

    dcgan-harness report resultados

writes ``report.json``, ``losses.png`` and ``report.md`` into that folder.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import output
from .errors import HarnessError, run_command

OUTPUT_NAME = "output.txt"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
LOSS_PLOT = "losses.png"
# Folders below the results folder searched for <host>/output.txt.
MAX_DEPTH = 3


class ReportError(HarnessError):
    """A results folder the report cannot be made from; one line naming the file and the fix."""


@dataclass
class RankFigures:
    rank: int
    world_size: int | None
    iterations: int
    iterations_expected: int | None
    mean_iteration_s: float | None
    median_iteration_s: float | None
    epoch_seconds: list[float]
    first_losses: dict | None
    last_losses: dict | None
    # (global iteration, Loss_D, Loss_G) in training order, for the plot.
    losses: list[tuple[int, float, float]] = field(repr=False, default_factory=list)

    def as_json(self) -> dict:
        return {
            "rank": self.rank,
            "world_size": self.world_size,
            "iterations": self.iterations,
            "iterations_expected": self.iterations_expected,
            "mean_iteration_s": self.mean_iteration_s,
            "median_iteration_s": self.median_iteration_s,
            "epoch_seconds": self.epoch_seconds,
            "first_losses": self.first_losses,
            "last_losses": self.last_losses,
        }


@dataclass
class HostReport:
    host: str
    path: Path
    ranks: list[RankFigures]
    problems: list[str]
    images: list[Path]

    @property
    def complete(self) -> bool:
        return not self.problems

    def as_json(self, root: Path) -> dict:
        first, *others = self.ranks or [None]
        entry = first.as_json() if first else {"rank": None, "world_size": None, "iterations": 0}
        entry.update(
            output=str(self.path.relative_to(root)),
            complete=self.complete,
            problems=self.problems,
            images=[str(image.relative_to(root)) for image in self.images],
        )
        if others:
            # Several ranks per VM: the lowest above, the others here.
            entry["other_ranks"] = [figures.as_json() for figures in others]
        return entry


@dataclass
class RunReport:
    folder: Path
    hosts: list[HostReport]
    speedup: float | None = None
    efficiency: float | None = None
    # Set when the folder also holds hosts of a run of another world size.
    shares_folder: bool = False

    @property
    def nodes(self) -> int:
        return len(self.hosts)

    @property
    def world_size(self) -> int | None:
        sizes = {figures.world_size for host in self.hosts for figures in host.ranks if figures.world_size}
        return max(sizes) if sizes else None

    @property
    def missing_ranks(self) -> list[int]:
        """Ranks of the job that no host's output covers."""
        present = {figures.rank for host in self.hosts for figures in host.ranks}
        return [rank for rank in range(self.world_size or 0) if rank not in present]

    @property
    def complete(self) -> bool:
        return all(host.complete for host in self.hosts) and not self.missing_ranks

    @property
    def epoch_seconds(self) -> float | None:
        """The job's epoch time: per epoch the slowest rank, averaged over the epochs every rank finished."""
        per_rank = [figures.epoch_seconds for host in self.hosts for figures in host.ranks]
        if not per_rank or any(not seconds for seconds in per_rank):
            return None
        epochs = min(len(seconds) for seconds in per_rank)
        slowest = [max(seconds[epoch] for seconds in per_rank) for epoch in range(epochs)]
        return sum(slowest) / len(slowest)

    def label(self, root: Path) -> str:
        label = "." if self.folder == root else str(self.folder.relative_to(root))
        return f"{label} (world size {self.world_size})" if self.shares_folder else label

    def as_json(self, root: Path) -> dict:
        return {
            "folder": self.label(root),
            "nodes": self.nodes,
            "world_size": self.world_size,
            "complete": self.complete,
            "missing_ranks": self.missing_ranks,
            "epoch_seconds": _round(self.epoch_seconds),
            "speedup": _round(self.speedup),
            "efficiency": _round(self.efficiency),
            "hosts": {host.host: host.as_json(root) for host in self.hosts},
        }


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


# --- Reading the outputs --------------------------------------------------------------


def find_outputs(root: Path) -> list[Path]:
    paths = []
    for depth in range(1, MAX_DEPTH + 1):
        paths += root.glob("/".join(["*"] * depth) + "/" + OUTPUT_NAME)
    return sorted(path for path in paths if path.is_file())


def looks_like_app_output(result: output.RunOutput) -> bool:
    return bool(result.namespace_line or result.rank_lines or result.iterations or result.epoch_times)


def rank_figures(result: output.RunOutput, rank: int) -> RankFigures:
    records = sorted(
        (it for it in result.iterations if it.rank == rank), key=lambda it: (it.epoch, it.iteration, it.line_number)
    )
    sizes = [size for r, size in result.rank_lines if r == rank]
    times = [it.iteration_time for it in records]
    per_epoch = sorted({it.num_iterations for it in records})
    losses = [(it.epoch * it.num_iterations + it.iteration, it.loss_d, it.loss_g) for it in records]
    epochs = sorted(epoch for r, epoch in result.epoch_times if r == rank)
    return RankFigures(
        rank=rank,
        world_size=sizes[0] if sizes else None,
        iterations=len(records),
        iterations_expected=per_epoch[0] * _epochs_of(result) if len(per_epoch) == 1 else None,
        mean_iteration_s=_round(statistics.fmean(times)) if times else None,
        median_iteration_s=_round(statistics.median(times)) if times else None,
        epoch_seconds=[result.epoch_times[(rank, epoch)] for epoch in epochs],
        first_losses=_losses_of(records[0]) if records else None,
        last_losses=_losses_of(records[-1]) if records else None,
        losses=losses,
    )


def _losses_of(record: output.Iteration) -> dict:
    # JSON has no NaN: a diverged loss is null here and named in the problems.
    return {name: value if math.isfinite(value) else None for name, value in (("loss_d", record.loss_d), ("loss_g", record.loss_g))}


def _epochs_of(result: output.RunOutput) -> int:
    epochs = (result.args or {}).get("num_epochs")
    return epochs if isinstance(epochs, int) and epochs > 0 else 1


def completeness_problems(result: output.RunOutput, ranks: list[int]) -> list[str]:
    """What keeps a host's output from being its complete part of the run.

    The report knows neither the images nor the batch size the run was given,
    so the iteration count is judged against what the app's own lines announce;
    a host's file covers the ranks it names.
    """
    world_size = output.default_world_size(result)
    expected = output.Expectations(
        epochs=_epochs_of(result),
        world_size=world_size,
        ranks=tuple(rank for rank in ranks if 0 <= rank < world_size) or None,
        iterations=None,
        dataset=None,
    )
    return output.check_complete(result, expected)


def read_host(path: Path) -> HostReport:
    try:
        result = output.parse_output_file(path)
    except OSError as error:
        raise ReportError(f"{path}: cannot read it ({error.strerror or error}); check the file's permissions") from None
    if not looks_like_app_output(result):
        raise ReportError(
            f"{path}: not an output of dist_dcgan.py (no Namespace, Rank, iteration or epoch line); "
            "remove it or fetch the run again"
        )
    ranks = sorted(set(result.ranks) | {it.rank for it in result.iterations} | {rank for rank, _ in result.epoch_times})
    figures = [rank_figures(result, rank) for rank in ranks]
    images = sorted(image for image in path.parent.glob("*.png"))
    return HostReport(path.parent.name, path, figures, completeness_problems(result, ranks), images)


def read_runs(root: Path) -> list[RunReport]:
    """Every run below root, with speedup and efficiency against the 1-node run if there is one."""
    if not root.is_dir():
        raise ReportError(f"{root}: no such folder; pass the results folder configure.yaml fetched into (e.g. resultados)")
    outputs = find_outputs(root)
    if not outputs:
        raise ReportError(
            f"{root}: holds no <host>/{OUTPUT_NAME}; run `make run` first or pass the folder configure.yaml fetched into"
        )
    # Host folders left by an earlier run of another size hold another world size.
    by_run: dict[tuple[Path, int], list[HostReport]] = {}
    for path in outputs:
        host = read_host(path)
        sizes = [figures.world_size for figures in host.ranks if figures.world_size]
        by_run.setdefault((path.parent.parent, sizes[0] if sizes else 0), []).append(host)
    folders = [folder for folder, _ in by_run]
    runs = [
        RunReport(folder, hosts, shares_folder=folders.count(folder) > 1)
        for (folder, _), hosts in sorted(by_run.items(), key=lambda item: (str(item[0][0]), item[0][1]))
    ]
    # Sorted by size, so the table reads 1, 2, 4 ... nodes.
    runs.sort(key=lambda run: (run.nodes, run.world_size or 0, str(run.folder)))
    baseline = next((run for run in runs if run.nodes == 1 and run.epoch_seconds), None)
    for run in runs:
        if baseline and run.epoch_seconds:
            run.speedup = baseline.epoch_seconds / run.epoch_seconds
            run.efficiency = run.speedup / run.nodes
    return runs


# --- Writing the report ---------------------------------------------------------------


def plot_losses(runs: list[RunReport], path: Path) -> int:
    """Loss_D and Loss_G per iteration, one line per rank; the number of lines drawn per panel."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    several = len(runs) > 1
    figure, (axis_d, axis_g) = pyplot.subplots(2, 1, sharex=True, figsize=(8, 6), dpi=100)
    lines = 0
    try:
        for run in runs:
            for host in run.hosts:
                for figures in host.ranks:
                    if not figures.losses:
                        continue
                    steps, loss_d, loss_g = zip(*figures.losses)
                    label = f"rank {figures.rank} ({host.host})"
                    if several:
                        label = f"{run.label(path.parent)}: {label}"
                    axis_d.plot(steps, loss_d, marker="." if len(steps) < 20 else None, label=label)
                    axis_g.plot(steps, loss_g, marker="." if len(steps) < 20 else None, label=label)
                    lines += 1
        axis_d.set_ylabel("Loss_D")
        axis_g.set_ylabel("Loss_G")
        axis_g.set_xlabel("iteration")
        axis_d.set_title("DCGAN losses per iteration")
        for axis in (axis_d, axis_g):
            axis.grid(True, alpha=0.3)
            if lines:
                axis.legend(fontsize="small")
        figure.tight_layout()
        figure.savefig(path)
    finally:
        pyplot.close(figure)
    return lines


def _cell(value: float | None, pattern: str) -> str:
    return "n/a" if value is None else pattern.format(value)


def timing_table(runs: list[RunReport], root: Path) -> list[str]:
    lines = [
        "| run | nodes | ranks | epoch (s) | speedup | efficiency | mean iteration (s) | complete |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        means = [f.mean_iteration_s for host in run.hosts for f in host.ranks if f.mean_iteration_s is not None]
        lines.append(
            f"| {run.label(root)} | {run.nodes} | {run.world_size or 'n/a'} | {_cell(run.epoch_seconds, '{:.1f}')} "
            f"| {_cell(run.speedup, '{:.2f}')} | {_cell(run.efficiency, '{:.0%}')} "
            f"| {_cell(max(means) if means else None, '{:.3f}')} | {'yes' if run.complete else 'no'} |"
        )
    return lines


def rank_table(runs: list[RunReport], root: Path) -> list[str]:
    lines = [
        "| run | host | rank | world size | iterations | mean / median iteration (s) | epoch (s) "
        "| first Loss_D / Loss_G | last Loss_D / Loss_G |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        for host in run.hosts:
            for f in host.ranks:
                first = f.first_losses or {}
                last = f.last_losses or {}
                expected = f"/{f.iterations_expected}" if f.iterations_expected else ""
                lines.append(
                    f"| {run.label(root)} | {host.host} | {f.rank} | {f.world_size or 'n/a'} | {f.iterations}{expected} "
                    f"| {_cell(f.mean_iteration_s, '{:.3f}')} / {_cell(f.median_iteration_s, '{:.3f}')} "
                    f"| {', '.join(f'{s:.1f}' for s in f.epoch_seconds) or 'none'} "
                    f"| {_cell(first.get('loss_d'), '{:.4f}')} / {_cell(first.get('loss_g'), '{:.4f}')} "
                    f"| {_cell(last.get('loss_d'), '{:.4f}')} / {_cell(last.get('loss_g'), '{:.4f}')} |"
                )
    return lines


def markdown(runs: list[RunReport], root: Path, plotted: int) -> str:
    lines = ["# DCGAN training report", "", "## Epoch time by number of nodes", ""]
    lines += timing_table(runs, root)
    lines.append("")
    if not any(run.nodes == 1 and run.epoch_seconds for run in runs):
        lines += ["Speedup and efficiency need a finished 1-node run in this folder.", ""]
    else:
        lines += ["Speedup = 1-node epoch time / N-node epoch time; efficiency = speedup / N.", ""]
    lines += ["## Ranks", ""] + rank_table(runs, root) + [""]
    problems = [(run, host) for run in runs for host in run.hosts if host.problems]
    if problems or any(run.missing_ranks for run in runs):
        lines += ["## Incomplete outputs", ""]
        for run in runs:
            if run.missing_ranks:
                missing = ", ".join(map(str, run.missing_ranks))
                lines.append(f"- run `{run.label(root)}`: no output holds rank(s) {missing} of world size {run.world_size}")
        for run, host in problems:
            lines += [f"- `{host.path.relative_to(root)}`: {problem}" for problem in host.problems]
        lines.append("")
    lines += ["## Losses", ""]
    lines += [f"![Loss_D and Loss_G per iteration]({LOSS_PLOT})" if plotted else "No iteration lines to plot.", ""]
    images = [(host, image) for run in runs for host in run.hosts for image in host.images]
    if images:
        lines += ["## Sample images", ""]
        for host, image in images:
            relative = image.relative_to(root).as_posix()
            lines += [f"`{relative}`", "", f"![{host.host}: {image.stem}]({relative})", ""]
    return "\n".join(lines)


def write_report(root: Path) -> dict:
    """Writes report.json, losses.png and report.md into root; returns the JSON document."""
    root = Path(root).resolve()
    runs = read_runs(root)
    plotted = plot_losses(runs, root / LOSS_PLOT)
    document = {"runs": [run.as_json(root) for run in runs]}
    (root / REPORT_JSON).write_text(json.dumps(document, indent=2) + "\n")
    (root / REPORT_MD).write_text(markdown(runs, root, plotted) + "\n")
    return document


def summary_lines(document: dict) -> list[str]:
    lines = []
    for run in document["runs"]:
        epoch = run["epoch_seconds"]
        text = f"{run['folder']}: {run['nodes']} node(s), world size {run['world_size']}, "
        text += f"epoch {epoch:.1f} s" if epoch is not None else "no finished epoch"
        if run["speedup"] is not None:
            text += f", speedup {run['speedup']:.2f}, efficiency {run['efficiency']:.0%}"
        text += "" if run["complete"] else " (incomplete)"
        lines.append(text)
    return lines


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("results_dir", type=Path, help="the folder configure.yaml fetched into (e.g. resultados)")
    args = parser.parse_args(argv)
    return run_command(lambda: _report(args.results_dir))


def _report(root: Path) -> int:
    document = write_report(root)
    for line in summary_lines(document):
        print(line)
    print(f"written {root / REPORT_MD}, {root / REPORT_JSON} and {root / LOSS_PLOT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
