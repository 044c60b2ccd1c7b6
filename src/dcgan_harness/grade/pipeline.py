"""The order of the stages, and grading a class with them.

Each submission goes through every stage, in order, even when an earlier one
failed: a playbook that fails at syntax-check still gets its feedback for
every step. Its results.json is written whatever happens, grading crashes
included; a class's grades.csv and junit.xml follow at the end.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from ..interrupts import sigterm_as_ctrl_c
from ..localcloud import down, ensure_engine, prepare_images, progress, serve_app
from ..localcloud.controller import ensure_controller_image
from ..localcloud.images import runtime_digest
from ..localcloud.lxd import ensure_lxd, ensure_lxd_image
from .formats import (
    ClassTable,
    GradescopeJson,
    GradesCsv,
    JUnitXml,
    printable,
    write_atomically,
)
from .results import ERROR, CheckResult, SubmissionResult
from .reuse import reuse_earlier
from .rubric import Rubric
from .run import RunStage
from .staging import SERVED_NAME, build_reference_image, prepare_app
from .static import StaticStage
from .submission import Submission
from .verify import VerifyStage
from .work import STAGED_IMAGES, UNPRIVILEGED, GradingRun, SubmissionWork

STAGES = (StaticStage, RunStage, VerifyStage)


def start_grading(
    app_dir: Path, mnist_dir: Path, mode: str, timeout: float, rubric: Rubric, out_dir: Path,
    backend: str = UNPRIVILEGED,
) -> GradingRun:
    grading_id = "g" + secrets.token_hex(3)
    client = ensure_engine()
    images = prepare_images(client)
    if backend == UNPRIVILEGED:
        # Imported once here, not inside the first submission's time limit.
        ensure_lxd_image(ensure_lxd(), client, images.vm)
    controller_image = ensure_controller_image(client)
    with tempfile.TemporaryDirectory(prefix="dcgan-grade-app-") as tmp:
        app = prepare_app(app_dir, mnist_dir, STAGED_IMAGES[mode], Path(tmp))
        served = serve_app(app, grading_id, name=SERVED_NAME, client=client)
        reference_image = build_reference_image(client, app, served.commit)
    return GradingRun(
        client, images, controller_image, served, grading_id, mode, timeout, rubric, out_dir,
        app_dir=Path(app_dir), mnist_dir=Path(mnist_dir), reference_image=reference_image,
        runtime_digest=runtime_digest(images.registry), backend=backend,
    )


def grade_submission(run: GradingRun, submission: Submission, index: int, total: int) -> SubmissionResult:
    reused = reuse_earlier(run, submission, index, total)
    if reused is not None:
        return reused
    folder = run.out_dir / submission.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    result = SubmissionResult(submission.name, str(submission.source))
    work = SubmissionWork(submission, index, total, folder, result, run_id=f"{run.grading_id}-{index}")
    run.run_ids.add(work.run_id)
    if submission.playbook is not None:
        work.playbook_path = folder / "configure.yaml"
        work.playbook_path.write_bytes(submission.playbook)
    started = time.monotonic()
    try:
        for stage_class in STAGES:
            if run.stop.is_set():
                raise KeyboardInterrupt
            stage = stage_class()
            stage_started = time.monotonic()
            try:
                stage.run(run, work)
            except Exception as error:  # noqa: BLE001 - a crash scores zero, it does not stop the class
                work.report(stage.name, f"crashed: {error}", time.monotonic() - stage_started)
                result.crash = f"{stage.name}: {error}"
            _announce(work, result.stages[-1] if result.stages else None)
    finally:
        try:
            down(work.run_id, client=run.client)
        except Exception as error:  # noqa: BLE001 - the class goes on; `cloud down` removes it later
            progress(f"grade: removing the VM of {submission.name} failed ({error}); run `dcgan-harness cloud down`")
        if work.staged is not None:
            work.staged.remove()
        result.seconds = round(time.monotonic() - started, 1)
        _score_what_was_not_reached(run.rubric, result)
        GradescopeJson().write(folder, result, run.rubric.visibility)
    return result


def _score_what_was_not_reached(rubric: Rubric, result: SubmissionResult) -> None:
    """Every rubric check appears in the results, at zero when grading never got to it."""
    for rule in rubric.checks:
        if result.check(rule.id) is None:
            reason = f"not graded: {result.crash}" if result.crash else "not graded"
            result.checks.append(CheckResult(rule.id, rule.name, 0, rule.points, ERROR, [reason]))
    order = rubric.check_ids
    result.checks.sort(key=lambda check: order.index(check.id))


def _announce(work: SubmissionWork, stage) -> None:
    if stage is not None:
        progress(printable(f"[{work.index}/{work.total}] {work.name}: {stage.stage}: {stage.summary} ({stage.seconds:.1f}s)"))


def grade_class(run: GradingRun, submissions: list[Submission], jobs: int) -> list[SubmissionResult]:
    """Grade every submission, `jobs` at a time, each on its own VM; Ctrl-C or SIGTERM removes them all."""
    with sigterm_as_ctrl_c():
        return _grade_in_pool(run, submissions, jobs)


def _grade_in_pool(run: GradingRun, submissions: list[Submission], jobs: int) -> list[SubmissionResult]:
    # By position, not by name: nothing two submissions share can merge their results.
    results: dict[int, SubmissionResult] = {}
    total = len(submissions)
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="grade")
    try:
        futures = {
            pool.submit(grade_submission, run, submission, index, total): (index, submission)
            for index, submission in enumerate(submissions, 1)
        }
        for future in as_completed(futures):
            index, submission = futures[future]
            try:
                results[index] = future.result()
            except KeyboardInterrupt:
                raise
            except Exception as error:  # noqa: BLE001 - grade_submission writes its own results; this is a last resort
                results[index] = crashed_result(run, submission, error)
    except KeyboardInterrupt:
        run.stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        progress("grade: interrupted; removing every VM and controller of this grading run")
        remove_everything(run)
        raise
    pool.shutdown(wait=True)
    return [results[index] for index in sorted(results)]


def crashed_result(run: GradingRun, submission: Submission, error: Exception) -> SubmissionResult:
    result = SubmissionResult(submission.name, str(submission.source), crash=str(error))
    _score_what_was_not_reached(run.rubric, result)
    try:
        GradescopeJson().write(run.out_dir / submission.name, result, run.rubric.visibility)
    except OSError as write_error:  # the class's files still get its row
        progress(printable(f"grade: writing the results of {submission.name} failed ({write_error})"))
    return result


def remove_everything(run: GradingRun) -> None:
    for run_id in sorted(run.run_ids | {run.grading_id}):
        try:
            down(run_id, client=run.client)
        except Exception as error:  # noqa: BLE001 - go on with the others
            progress(f"grade: removing run {run_id} failed ({error}); run `dcgan-harness cloud down`")


def write_class_files(run: GradingRun, results: list[SubmissionResult]) -> None:
    check_ids = run.rubric.check_ids
    write_atomically(run.out_dir / GradesCsv.filename, GradesCsv().render(results, check_ids))
    write_atomically(run.out_dir / JUnitXml.filename, JUnitXml().render(results))
    print(ClassTable().render(results, check_ids))
