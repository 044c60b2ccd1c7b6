import math
from pathlib import Path

import pytest

from dcgan_harness import cli, output
from dcgan_harness.output import COURSE, Expectations, check_complete, parse_output

OUTPUTS = Path(__file__).parent / "fixtures" / "output"

NAMESPACE = (
    "Namespace(dataset='mnist', dataroot='/data', download=True, max_workers=1, batch_size=128, image_size=64, "
    "nz=100, ngf=64, ndf=64, num_epochs={epochs}, lr=0.0002, beta1=0.5, out_folder='/output', test_data=True, "
    "local_rank=0, seed=None)"
)


def iteration_line(epoch, iteration, total, rank=0, epochs=1, loss_d="1.2345", loss_g="2.3456"):
    return (
        f"[epoch: {epoch}/{epochs}][iteration: {iteration}/{total}][rank: {rank}] Loss_D: {loss_d}, "
        f"Loss_G: {loss_g}, D(x): 0.5123, D(G(z)): 0.4567 / 0.3456, iteration time: 6.1234s"
    )


def run_lines(iterations=3, epochs=1, rank=0, world_size=1):
    lines = [
        NAMESPACE.format(epochs=epochs),
        f"Rank: {rank}. World Size: {world_size}",
        "Dataset mnist loaded",
    ]
    for epoch in range(epochs):
        lines += [iteration_line(epoch, i, iterations, rank=rank, epochs=epochs) for i in range(iterations)]
        lines.append(f"[rank: {rank}] Epoch {epoch} took: 482.1234 seconds")
    return lines


def text(lines):
    return "\n".join(lines) + "\n"


def problems_of(lines, **expected):
    """Problems of the lines, against expectations of 3 iterations unless told otherwise."""
    expected.setdefault("iterations", 3)
    return check_complete(parse_output(text(lines)), Expectations(**expected))


# --- parsing -----------------------------------------------------------------------


def test_parses_every_kind_of_line():
    result = parse_output(text(run_lines(iterations=2)))

    assert result.namespace_line == NAMESPACE.format(epochs=1)
    assert result.rank_lines == [(0, 1)]
    assert result.datasets_loaded == ["mnist"] and result.dataset_loaded
    assert result.epoch_times == {(0, 0): 482.1234}
    assert [it.iteration for it in result.iterations] == [0, 1]
    assert result.ignored_lines == 0


def test_iteration_record_holds_every_field():
    result = parse_output(iteration_line(0, 3, 79) + "\n")

    assert result.iterations == [
        output.Iteration(
            epoch=0,
            num_epochs=1,
            iteration=3,
            num_iterations=79,
            rank=0,
            loss_d=1.2345,
            loss_g=2.3456,
            d_x=0.5123,
            d_g_z1=0.4567,
            d_g_z2=0.3456,
            iteration_time=6.1234,
            line_number=1,
        )
    ]


def test_namespace_becomes_a_dict_of_values():
    args = parse_output(text(run_lines(epochs=2))).args

    assert args["dataset"] == "mnist"
    assert args["num_epochs"] == 2
    assert args["test_data"] is True
    assert args["seed"] is None
    assert args["lr"] == 0.0002


def test_namespace_values_that_are_not_literals_keep_their_text():
    args = parse_output("Namespace(dataroot=PosixPath('/data'), nz=100)\n").args
    assert args == {"dataroot": "PosixPath('/data')", "nz": 100}


def test_unparseable_namespace_keeps_line_without_args():
    result = parse_output("Namespace(dataset='mnist', broken=)\n")
    assert result.namespace_line == "Namespace(dataset='mnist', broken=)"
    assert result.args is None


def test_non_finite_values_parse():
    result = parse_output(
        text(
            [
                iteration_line(0, 0, 1, loss_d="nan", loss_g="-inf"),
                iteration_line(0, 0, 1, loss_g="inf"),
            ]
        )
    )
    first, second = result.iterations
    assert math.isnan(first.loss_d) and first.loss_g == -math.inf
    assert second.loss_g == math.inf


def test_warnings_and_prefixes_are_tolerated():
    lines = run_lines(iterations=2)
    noisy = [
        "/usr/lib/python3/dist-packages/torch/utils/data/dataloader.py:557: UserWarning: something",
        "  warnings.warn(",
        lines[0],
        "compute01 | " + lines[1],
        lines[2],
        "[W socket.cpp:464] [c10d] The server socket has failed to bind.",
        "compute01 | " + lines[3],
        lines[4],
        lines[5] + "   ",
    ]
    result = parse_output(text(noisy))

    assert check_complete(result, Expectations(iterations=2)) == []
    assert result.ignored_lines == 3


# --- Expectations -------------------------------------------------------------------


def test_course_expectations_are_one_epoch_of_79_iterations_on_one_rank():
    assert COURSE == Expectations(epochs=1, world_size=1, ranks=None, iterations=79, dataset="mnist")
    assert COURSE.expected_ranks == (0,)


@pytest.mark.parametrize(
    "images, batch, world, iterations",
    [(10_000, 128, 1, 79), (10_000, 128, 2, 40), (256, 128, 1, 2), (10_000, 64, 1, 157), (10_000, 128, 3, 27)],
)
def test_iterations_follow_from_the_runs_settings(images, batch, world, iterations):
    assert Expectations.from_settings(images, batch, world_size=world).iterations == iterations


def test_expectations_of_one_node_of_two():
    expected = Expectations.from_settings(10_000, 128, world_size=2, ranks=[1])
    assert expected.ranks == (1,) and expected.expected_ranks == (1,)


@pytest.mark.parametrize(
    "settings",
    [{"epochs": 0}, {"world_size": 0}, {"iterations": 0}, {"world_size": 2, "ranks": (2,)}],
)
def test_impossible_expectations_are_refused(settings):
    with pytest.raises(ValueError):
        Expectations(**settings)


# --- check_complete ----------------------------------------------------------------


def test_complete_run_has_no_problems():
    assert check_complete(parse_output(text(run_lines(iterations=79)))) == []


def test_complete_two_epoch_run_of_rank_one_has_no_problems():
    lines = run_lines(iterations=40, epochs=2, rank=1, world_size=2)
    assert problems_of(lines, world_size=2, epochs=2, ranks=(1,), iterations=40) == []


def test_truncated_run_reports_missing_iterations_and_epoch_line():
    lines = run_lines(iterations=79)
    truncated = lines[: 3 + 5]  # header lines and iterations 0-4

    assert problems_of(truncated, iterations=79) == [
        "rank 0 epoch 0: missing iterations 5-78 of 0-78",
        "rank 0 epoch 0: no '[rank: 0] Epoch 0 took' line",
    ]


def test_gaps_are_listed_as_ranges():
    lines = run_lines(iterations=10)
    del lines[3 + 7]
    del lines[3 + 2 : 3 + 5]
    assert problems_of(lines, iterations=10) == ["rank 0 epoch 0: missing iterations 2-4, 7 of 0-9"]


def test_duplicated_iteration_is_reported():
    lines = run_lines(iterations=3)
    lines.insert(5, iteration_line(0, 1, 3))
    assert problems_of(lines) == ["rank 0 epoch 0: iterations 1 printed more than once"]


def test_nan_loss_is_reported_with_its_line():
    lines = run_lines(iterations=3)
    lines[4] = iteration_line(0, 1, 3, loss_d="nan")
    lines[5] = iteration_line(0, 2, 3, loss_g="inf")

    assert problems_of(lines) == [
        "rank 0 epoch 0: 2 iteration(s) with non-finite values, first at iteration 1 (line 5: Loss_D=nan)"
    ]


def test_missing_namespace_line_is_reported():
    lines = run_lines()[1:]
    assert problems_of(lines) == ["no 'Namespace(...)' line: the app did not start or its output was not captured"]


def test_missing_rank_line_is_reported():
    lines = run_lines()
    del lines[1]
    assert problems_of(lines) == ["no 'Rank: r. World Size: w' line: the process group never came up"]


def test_wrong_world_size_is_reported():
    assert problems_of(run_lines(rank=0, world_size=1), world_size=2, ranks=(0,)) == [
        "'Rank: 0. World Size: 1' but the run was meant to have world size 2",
    ]


def test_required_rank_missing_is_reported():
    problems = problems_of(run_lines(rank=1, world_size=2), world_size=2, ranks=(0,))
    assert "no 'Rank: 0. World Size: 2' line" in problems
    assert "rank 0 epoch 0: no iteration lines" in problems
    assert "iteration lines from rank(s) 1 that this output should not have" in problems


def test_by_default_every_rank_of_the_world_is_required():
    problems = problems_of(run_lines(rank=1, world_size=2), world_size=2)
    assert "no 'Rank: 0. World Size: 2' line" in problems
    assert "rank 0 epoch 0: no iteration lines" in problems


def test_missing_dataset_line_is_reported():
    lines = [line for line in run_lines() if not line.startswith("Dataset")]
    assert problems_of(lines) == ["no 'Dataset <name> loaded' line: the dataset could not be loaded"]


def test_missing_epoch_line_is_reported():
    lines = run_lines(iterations=3, epochs=2)
    lines = [line for line in lines if "Epoch 1 took" not in line]
    assert problems_of(lines, epochs=2) == ["rank 0 epoch 1: no '[rank: 0] Epoch 1 took' line"]


def test_fewer_epochs_than_expected_are_reported():
    problems = problems_of(run_lines(epochs=1), epochs=2)
    assert problems == [
        "the app was started with num_epochs=1 but the run was meant to have 2",
        "iteration lines announce 1 epoch(s) but the run was meant to have 2",
        "rank 0 epoch 1: no iteration lines",
        "rank 0 epoch 1: no '[rank: 0] Epoch 1 took' line",
    ]


def test_more_epochs_than_expected_are_reported():
    problems = problems_of(run_lines(epochs=2))
    assert "iteration lines of epoch(s) 1 beyond the 1 the run was meant to have" in problems
    assert any("'[rank: 0] Epoch 1 took' is not an epoch of rank(s) 0" in problem for problem in problems)


def test_disagreeing_iteration_totals_are_reported():
    lines = run_lines(iterations=3)
    lines[5] = iteration_line(0, 2, 4)
    assert problems_of(lines) == ["rank 0 epoch 0: iteration lines disagree on the number of iterations (3, 4)"]


def test_unchecked_iterations_take_the_announced_total():
    assert problems_of(run_lines(iterations=5), iterations=None) == []


def test_empty_output_reports_every_missing_part():
    assert problems_of([]) == [
        "no 'Namespace(...)' line: the app did not start or its output was not captured",
        "no 'Rank: r. World Size: w' line: the process group never came up",
        "no 'Dataset <name> loaded' line: the dataset could not be loaded",
        "rank 0 epoch 0: no iteration lines",
        "rank 0 epoch 0: no '[rank: 0] Epoch 0 took' line",
    ]


@pytest.mark.parametrize(
    "numbers, expected",
    [
        ([], ""),
        ([4], "4"),
        ([0, 1, 2, 5, 7, 8], "0-2, 5, 7-8"),
        ([9, 3, 2], "2-3, 9"),
    ],
)
def test_format_ranges(numbers, expected):
    assert output.format_ranges(numbers) == expected


# --- Outputs that once passed as complete -------------------------------------------------

# Each file in fixtures/output/ and a problem `parse` must name for it, course defaults.
BAD_OUTPUTS = {
    "zero-epochs": "the app was started with num_epochs=0 but the run was meant to have 1",
    "announces-one-iteration": "iteration lines announce 1 iterations but the run was meant to have 79",
    "rank-one-alone": "no 'Rank: 0. World Size: 1' line",
    "wrong-split": "'Rank: 0. World Size: 2' but the run was meant to have world size 1",
    "wrong-batch-size": "iteration lines announce 157 iterations but the run was meant to have 79",
    "epoch-line-twice": "the 'Epoch 0 took' line appears 2 times",
    "stray-rank-epoch-line": "'[rank: 1] Epoch 0 took' is not an epoch of rank(s) 0",
    "traceback-after-last-epoch": "a Python traceback",
    "wrong-dataset": "dataset cifar10 was loaded but the run was meant to use mnist",
}


def test_every_output_fixture_is_checked():
    assert {path.stem for path in OUTPUTS.glob("*.txt")} == {*BAD_OUTPUTS, "complete-course"}


def test_the_course_output_fixture_is_complete():
    assert check_complete(output.parse_output_file(OUTPUTS / "complete-course.txt")) == []


@pytest.mark.parametrize("stem", sorted(BAD_OUTPUTS))
def test_each_bad_output_is_rejected_with_course_defaults(stem, capsys):
    assert cli.main(["parse", str(OUTPUTS / f"{stem}.txt")]) == 1
    problems = [line for line in capsys.readouterr().out.splitlines() if line.startswith("problem: ")]
    assert any(BAD_OUTPUTS[stem] in problem for problem in problems), problems


def test_rank_one_alone_is_rejected_for_a_world_of_two(capsys):
    assert cli.main(["parse", str(OUTPUTS / "rank-one-alone.txt"), "--world-size", "2"]) == 1
    assert "problem: no 'Rank: 0. World Size: 2' line" in capsys.readouterr().out


def test_rank_one_alone_is_complete_as_that_nodes_part(capsys):
    path = OUTPUTS / "rank-one-alone.txt"
    assert cli.main(["parse", str(path), "--world-size", "2", "--rank", "1"]) == 0, capsys.readouterr().out


# --- command line ------------------------------------------------------------------


def write_output(tmp_path, lines):
    path = tmp_path / "output.txt"
    path.write_text(text(lines))
    return path


def test_cli_passes_complete_output(tmp_path, capsys):
    path = write_output(tmp_path, run_lines(iterations=4, epochs=2))

    assert cli.main(["parse", str(path), "--epochs", "2", "--iterations", "4"]) == 0
    out = capsys.readouterr().out
    assert "rank 0 epoch 1: 4/4 iteration lines" in out
    assert "complete: 2 epoch(s) of 4 iterations, world size 1, rank(s) 0" in out
    assert "problem:" not in out


def test_cli_prints_one_line_per_problem_and_fails(tmp_path, capsys):
    lines = run_lines(iterations=5)
    lines[4] = iteration_line(0, 1, 5, loss_d="nan")
    path = write_output(tmp_path, lines[:-2])

    assert cli.main(["parse", str(path), "--images", "640", "--batch-size", "128"]) == 1
    problems = [line for line in capsys.readouterr().out.splitlines() if line.startswith("problem: ")]
    assert problems == [
        "problem: rank 0 epoch 0: missing iterations 4 of 0-4",
        "problem: rank 0 epoch 0: 1 iteration(s) with non-finite values, first at iteration 1 (line 5: Loss_D=nan)",
        "problem: rank 0 epoch 0: no '[rank: 0] Epoch 0 took' line",
    ]


def test_cli_takes_epochs_from_the_caller_not_the_file(tmp_path, capsys):
    path = write_output(tmp_path, run_lines(epochs=3, iterations=79))
    assert cli.main(["parse", str(path)]) == 1
    assert "num_epochs=3 but the run was meant to have 1" in capsys.readouterr().out
    assert cli.main(["parse", str(path), "--epochs", "3"]) == 0


def test_cli_checks_given_world_size(tmp_path, capsys):
    path = write_output(tmp_path, run_lines(rank=1, world_size=2, iterations=40))
    assert cli.main(["parse", str(path), "--world-size", "2", "--rank", "1"]) == 0
    assert cli.main(["parse", str(path), "--world-size", "4", "--rank", "1"]) == 1


def test_cli_fails_on_unreadable_file_in_one_line(tmp_path, capsys):
    assert cli.main(["parse", str(tmp_path / "absent.txt")]) == 2
    err = capsys.readouterr().err
    assert "cannot read it" in err and err.count("\n") == 1


def test_cli_refuses_impossible_expectations_in_one_line(tmp_path, capsys):
    path = write_output(tmp_path, run_lines())
    assert cli.main(["parse", str(path), "--epochs", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: expected epochs must be a whole number of at least 1") and err.count("\n") == 1
