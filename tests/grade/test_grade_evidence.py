"""Evidence, not claims: each step scores on what the grader reads from
outside the VM and on its own run of the DCGAN, so the fakes of the test
class earn nothing for what they fake, verify ends within its bounds
whatever the VM holds, and honest work keeps every point."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import docker
import pytest
from grade_helpers import run_grader

from dcgan_harness.grade.rubric import load_rubric
from dcgan_harness.localcloud.images import REGISTRY_RUNTIME_REPO, RUNTIME_IMAGE, ensure_registry, registry_for

RUBRIC = load_rubric()
# What a verify stage takes at most here: reading from outside takes well
# under a second, the grader's own run of the DCGAN seconds to a minute.
VERIFY_BOUND_S = 300


def checks_by_id(results: dict) -> dict[str, dict]:
    names = {rule.name: rule.id for rule in RUBRIC.checks}
    return {names[test["name"]]: test for test in results["tests"]}


def stage_seconds(graded, name: str, stage: str) -> float:
    output = graded.results(name)["output"]
    line = next(line for line in output.splitlines() if line.startswith(f"{stage}: "))
    return float(line.rsplit("(", 1)[1].rstrip("s)"))


def test_an_imported_image_is_not_a_build(graded):
    build = checks_by_id(graded.results("fabricated-output"))["build"]
    assert build["score"] == 0
    assert "was not built from the clone's Dockerfile" in build["output"], build["output"]


def test_a_printed_output_is_not_a_training(graded):
    run = checks_by_id(graded.results("fabricated-output"))["run"]
    assert run["score"] == 0
    assert "does not hold what the DCGAN prints on this submission's data" in run["output"], run["output"]
    # The fake is complete by the parser's measure: only the losses give it away.
    assert "is not one complete epoch" not in run["output"]


def test_what_the_faker_really_did_still_counts(graded):
    checks = checks_by_id(graded.results("fabricated-output"))
    assert checks["install"]["score"] == checks["install"]["max_score"], checks["install"]["output"]
    assert checks["clone"]["score"] == checks["clone"]["max_score"], checks["clone"]["output"]
    assert checks["fetch"]["score"] == checks["fetch"]["max_score"], checks["fetch"]["output"]


def test_a_fake_engine_is_not_an_install(graded):
    install = checks_by_id(graded.results("fake-engine-and-clone"))["install"]
    assert install["score"] == 0
    assert "no process of the VM runs its dockerd" in install["output"], install["output"]


def test_a_head_without_objects_is_not_a_clone(graded):
    clone = checks_by_id(graded.results("fake-engine-and-clone"))["clone"]
    assert clone["score"] == 0
    assert "lacks the commit or objects it needs" in clone["output"], clone["output"]


def test_a_fifo_as_head_does_not_hold_verify_up(graded):
    assert stage_seconds(graded, "fake-engine-and-clone", "verify") < VERIFY_BOUND_S
    assert graded.results("fake-engine-and-clone")["score"] == RUBRIC.rule("static").points


def test_honest_work_is_shown_by_its_evidence(graded):
    results = graded.results("course-style")
    checks = checks_by_id(results)
    assert results["score"] == sum(rule.points for rule in RUBRIC.checks), json.dumps(results, indent=1)[:4000]
    assert "checked against Debian's package" in checks["install"]["output"]
    assert "its objects checked" in checks["clone"]["output"] and "note:" not in checks["clone"]["output"]
    assert "built from the clone's Dockerfile (1 RUN step(s) on dcgan-runtime:latest)" in checks["build"]["output"]
    assert "are those of the grader's own run on this submission's own 256 images" in checks["run"]["output"]


def test_no_submission_can_push_to_the_mirror_the_others_pull_from(graded):
    log = (graded.out / "mirror-poison" / "log.txt").read_text(errors="replace")
    assert "mirror push exit status: " in log, log[-3000:]
    assert "mirror push exit status: 0" not in log, log[-3000:]


VICTIM = Path(__file__).resolve().parent / "victim"
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@pytest.fixture(scope="module")
def victim_after_cloud_down(graded, canary, tmp_path_factory):
    """The class (its poisoner included) graded, `cloud down`, then a complete submission in a new run."""
    secret, home = canary
    down = subprocess.run([sys.executable, "-m", "dcgan_harness", "cloud", "down"], capture_output=True, text=True, timeout=600)
    assert down.returncode == 0, down.stderr[-2000:]
    return run_grader([str(VICTIM)], home, secret, tmp_path_factory.mktemp("victim") / "out")


def test_a_submission_graded_after_the_poisoner_and_cloud_down_builds_on_the_published_runtime(victim_after_cloud_down):
    results = victim_after_cloud_down.results("victim")
    lost = {check: test["output"] for check, test in checks_by_id(results).items() if test["score"] != test["max_score"]}
    assert lost == {}, lost
    log = (victim_after_cloud_down.out / "victim" / "log.txt").read_text(errors="replace")
    reported = next(line for line in log.splitlines() if '"victim_layers=' in line)
    layers = DIGEST.findall(reported)
    published = docker.from_env().images.get(RUNTIME_IMAGE).attrs["RootFS"]["Layers"]
    # Exactly the published runtime's layers: the app's only RUN step changes no file, so it adds
    # none, and a runtime rebuilt with anything in it would have added one.
    assert layers == published, (layers, published)
    assert '"victim_poisoned=no"' in log, log[-3000:]


def test_the_mirror_still_serves_the_published_runtime_after_the_class(graded):
    client = docker.from_env()
    registry = registry_for(client)
    request = urllib.request.Request(
        f"http://{registry.address_for_vms}/v2/{REGISTRY_RUNTIME_REPO}/manifests/latest",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    ensure_registry(client)
    with opener.open(request, timeout=10) as response:
        manifest = json.loads(response.read())
    assert manifest["config"]["digest"] == client.images.get(RUNTIME_IMAGE).id


def test_a_students_own_batch_size_and_seed_are_rerun_not_refused(graded):
    run = checks_by_id(graded.results("missing-fetch"))["run"]
    assert run["score"] == run["max_score"], run["output"]
    assert "4 iterations" in run["output"] and "are those of the grader's own run" in run["output"]
