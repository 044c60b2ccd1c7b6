"""Pairs of playbooks that are near-identical once what is easy to change is
set aside: task order, task names, comments, whitespace, variable names in
templates. What stays is each task's module and its arguments, read with the
rules' own parser, so `apt: name=git` and `ansible.builtin.apt: {name: git}`
are one task.

Each playbook becomes a bag of features: a task's module with its whole
argument structure, and each argument on its own, so one changed path costs
a little and not the whole task. The score of a pair is the weighted
Jaccard index of their bags, in [0, 1]. What the course's starting
configure.yaml already holds is taken out first: every student shares it.

It flags, it does not judge: a small assignment has few ways to be right,
and two independent correct playbooks can score high.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass

from .. import rules
from ..rules.model import read_playbook
from .formats import printable

FILENAME = "similarity.csv"
# At or above this a pair is near-identical; the CSV lists every pair from LISTED up.
NEAR_IDENTICAL = 0.9
LISTED = 0.5
TEMPLATE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)
# Ansible's own record of where a task came from, not part of what it does.
IGNORED_ARGS = frozenset({"_ansible_check_mode"})
# Students' playbooks are read in a child process that limits itself first,
# as the static stage's rules are: a hostile file costs its bag, not the grader.
CHILD_TIMEOUT_S = 120
CHILD = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_CPU, (60, 60))
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from dcgan_harness.grade.similarity import features
texts = json.load(sys.stdin)
bags = {}
for name, text in texts.items():
    bag = features(text)
    bags[name] = None if bag is None else dict(bag)
    print(json.dumps([name, bags[name]]), flush=True)
"""


@dataclass(frozen=True)
class Pair:
    first: str
    second: str
    score: float
    identical_file: bool = False


def normalise(value):
    """Whitespace collapsed, Jinja expressions one placeholder, mappings sorted; lists keep their order."""
    if isinstance(value, dict):
        return {str(k): normalise(v) for k, v in sorted(value.items(), key=lambda item: str(item[0])) if str(k) not in IGNORED_ARGS}
    if isinstance(value, (list, tuple)):
        return [normalise(item) for item in value]
    if isinstance(value, str):
        return " ".join(TEMPLATE.sub("{{}}", value).split())
    return value


def _leaves(value, path: str = ""):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item, f"{path}[]")
    else:
        yield path, value


def features(text: str) -> Counter | None:
    """The playbook's bag of features, or None when it cannot be read as a playbook."""
    try:
        playbook = read_playbook(rules.parse_playbook(text))
    except Exception:  # noqa: BLE001 - an unreadable playbook is compared byte for byte only
        return None
    bag: Counter = Counter()
    for task in playbook.tasks:
        module = task.module or "?"
        args = normalise(task.args)
        bag[f"task {module} {json.dumps(args, sort_keys=True, default=str)}"] += 1
        bag[f"module {module}"] += 1
        for path, leaf in _leaves(args):
            bag[f"arg {module} {path}={json.dumps(leaf, default=str)}"] += 1
    return bag


def score(first: Counter, second: Counter) -> float:
    union = sum((first | second).values())
    return round(sum((first & second).values()) / union, 3) if union else 0.0


def bags_in_child(texts: dict[str, str]) -> dict[str, Counter | None]:
    """features() of each text, from a limited child process; None for a text it could not read.

    A child stopped by its limits on one text is started again on the texts after it.
    """
    bags: dict[str, Counter | None] = {}
    remaining = list(texts)
    while remaining:
        answered = _child_run({name: texts[name] for name in remaining})
        for name, bag in answered:
            bags[name] = None if bag is None else Counter(bag)
        done = {name for name, _ in answered}
        if not done:
            bags[remaining[0]] = None  # the one it stopped on
            done = {remaining[0]}
        remaining = [name for name in remaining if name not in done and name not in bags]
    return bags


def _child_run(texts: dict[str, str]) -> list[tuple[str, dict | None]]:
    try:
        output = subprocess.run([sys.executable, "-c", CHILD], input=json.dumps(texts), capture_output=True, text=True,
                                timeout=CHILD_TIMEOUT_S).stdout  # fmt: skip
    except subprocess.TimeoutExpired as expired:
        output = expired.stdout.decode("utf-8", "replace") if isinstance(expired.stdout, bytes) else expired.stdout or ""
    answered = []
    for line in output.splitlines():
        try:
            name, bag = json.loads(line)
        except ValueError:
            continue
        if name in texts:
            answered.append((name, bag))
    return answered


def pairs(playbooks: dict[str, bytes], template: bytes | None = None) -> list[Pair]:
    """Every pair from LISTED up, highest first."""
    texts = {name: content.decode("utf-8", "replace") for name, content in playbooks.items()}
    template_name = "\0template"  # no submission's name holds NUL
    if template:
        texts[template_name] = template.decode("utf-8", "replace")
    bags = bags_in_child(texts)
    shared = bags.pop(template_name, None)
    digests = {name: hashlib.sha256(content).hexdigest() for name, content in playbooks.items()}
    if shared:
        bags = {name: bag - shared if bag is not None else None for name, bag in bags.items()}
    found = []
    for first, second in itertools.combinations(sorted(playbooks), 2):
        identical = digests[first] == digests[second]
        if identical:
            value = 1.0
        elif bags[first] is None or bags[second] is None:
            continue
        else:
            value = score(bags[first], bags[second])
        if value >= LISTED:
            found.append(Pair(first, second, value, identical))
    return sorted(found, key=lambda pair: (-pair.score, pair.first, pair.second))


def render(found: list[Pair]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["first", "second", "score", "near_identical", "identical_file"])
    for pair in found:
        writer.writerow([printable(pair.first), printable(pair.second), f"{pair.score:.3f}",
                         "yes" if pair.score >= NEAR_IDENTICAL else "no", "yes" if pair.identical_file else "no"])  # fmt: skip
    return buffer.getvalue()
