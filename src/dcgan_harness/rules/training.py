"""The training step: the course's script, on the course's data, for the course's epochs, into output.txt.

The command is read word by word after the script's name, the way the
script's argparse reads it (``--opt value``, ``--opt=value`` and unambiguous
prefixes such as ``--num_e``), from the rendered command of a shell or
command task or the ``command`` of a docker_container task.
"""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Iterator

from . import commands
from .async_poll import is_container_run
from .base import Course, Rule
from .findings import Finding
from .model import Playbook, Task
from .templates import Unknown
from .values import DONE, Verdict, render, render_pieces

CONTAINER_MODULES = frozenset({"docker_container"})
# The script's options, so that a prefix of one is read as argparse reads it.
SCRIPT_OPTIONS = (
    "--dataset", "--dataroot", "--download", "--max_workers", "--workers", "--batch_size", "--image_size", "--nz",
    "--ngf", "--ndf", "--num_epochs", "--lr", "--beta1", "--out_folder", "--test_data", "--local_rank",
    "--local-rank", "--seed", "--manualSeed",
)
# The script's own default for --num_epochs, which the course does not want.
SCRIPT_DEFAULT_EPOCHS = 5
REDIRECTS = frozenset({">", ">>", "&>", "&>>", "1>", "1>>", ">|"})
UNKNOWN = "{?}"


def training_text(task: Task, playbook: Playbook) -> str:
    """What the task runs, rendered as far as the playbook's variables allow."""
    if task.module in commands.COMMAND_MODULES:
        if isinstance(task.args.get("argv"), list):
            try:
                return shlex.join(str(word) for word in render(task, task.args["argv"], playbook, lenient=True))
            except Unknown:
                return commands.command_text(task.args)
        return render_pieces(task, commands.command_text(task.args), playbook)
    if task.module in CONTAINER_MODULES:
        parts = [task.args.get("entrypoint"), task.args.get("command")]
        words = [" ".join(map(str, part)) if isinstance(part, list) else str(part) for part in parts if part]
        return render_pieces(task, " ".join(words), playbook)
    return ""


def script_arguments(text: str, script: str) -> list[list[str]] | None:
    """The words after each call of the script, up to the end of its command; None when it is not called."""
    words = commands.shell_words(text)
    calls = []
    for index, word in enumerate(words):
        if posixpath.basename(word) == script:
            rest = []
            for later in words[index + 1:]:
                if later in commands.SEPARATORS or later in REDIRECTS or later.startswith((">", "2>")):
                    break
                rest.append(later)
            calls.append(rest)
    return calls or None


def option_values(arguments: list[str]) -> tuple[dict[str, list[str]], bool]:
    """Each option given, with its values, and whether an unknown word might hold more options."""
    found: dict[str, list[str]] = {}
    unsure = False
    index = 0
    while index < len(arguments):
        word = arguments[index]
        index += 1
        if UNKNOWN in word and not word.startswith("--"):
            unsure = True
            continue
        if not word.startswith("--"):
            continue
        name, _, inline = word.partition("=")
        option = _option_named(name)
        if option is None:
            unsure = unsure or UNKNOWN in word
            continue
        if inline or "=" in word:
            found.setdefault(option, []).append(inline)
        elif index < len(arguments) and not arguments[index].startswith("--"):
            found.setdefault(option, []).append(arguments[index])
            index += 1
        else:
            found.setdefault(option, []).append("")
    return found, unsure


def _option_named(name: str) -> str | None:
    if name in SCRIPT_OPTIONS:
        return name
    matches = [option for option in SCRIPT_OPTIONS if option.startswith(name)] if len(name) > 2 else []
    return matches[0] if len(matches) == 1 else None


def trains_as_asked(arguments: list[str], course: Course) -> Verdict:
    options, unsure = option_values(arguments)

    def last(option: str) -> str | None:
        return options[option][-1] if options.get(option) else None

    dataset, epochs = last("--dataset"), last("--num_epochs")
    problems = []
    if dataset is None:
        problems.append(f"gives no --dataset (the course trains on {course.dataset})")
    elif UNKNOWN not in dataset and dataset != course.dataset:
        problems.append(f"trains on --dataset {dataset}, not {course.dataset}")
    if "--test_data" not in options:
        problems.append("has no --test_data, so it trains on the training split (60,000 images, downloaded)")
    if epochs is None:
        problems.append(f"gives no --num_epochs, so it trains {SCRIPT_DEFAULT_EPOCHS} epochs, not {course.epochs}")
    elif UNKNOWN not in epochs and epochs.strip() != str(course.epochs):
        problems.append(f"trains --num_epochs {epochs}, not {course.epochs}")
    if problems and unsure:
        return Verdict(None, f"trains as the course asks: a part of its command is unknown and it {problems[0]}")
    if problems:
        return Verdict(False, "; ".join(problems))
    if UNKNOWN in (dataset or "") or UNKNOWN in (epochs or ""):
        return Verdict(None, "trains as the course asks: its --dataset or --num_epochs is unknown")
    return DONE


def writes_output(text: str, output_name: str) -> bool:
    """A command that sends standard output to a file named output.txt (>, >>, &>, tee)."""
    words = commands.shell_words(text)
    for index, word in enumerate(words):
        target = None
        if word in REDIRECTS and index + 1 < len(words):
            target = words[index + 1]
        elif word.startswith((">", "&>", "1>")) and word.lstrip("&1>|"):
            target = word.lstrip("&1>|")
        elif posixpath.basename(word) == "tee":
            target = next((later for later in words[index + 1:] if not later.startswith("-")), None)
        if target is not None and posixpath.basename(target) == output_name:
            return True
    return False


def saves_registered_output(task: Task, playbook: Playbook, output_name: str) -> bool:
    """A copy of a registered result's output into output.txt: copy content="{{ run.stdout }}"."""
    register = task.data.get("register")
    if not isinstance(register, str) or not register:
        return False
    for saver in playbook.tasks:
        if saver.module not in {"copy", "template"} or not playbook.runs(saver):
            continue
        content = str(saver.args.get("content", ""))
        dest = str(saver.args.get("dest", ""))
        if register in content and posixpath.basename(dest.strip()) == output_name:
            return True
    return False


class RequiredTraining(Rule):
    """A task that runs trains the DCGAN on the MNIST test split for the course's epochs, into output.txt."""

    id = "required-training"
    tags = ("course",)

    def check(self, playbook: Playbook, course: Course) -> Iterator[Finding]:
        texts = {id(task): training_text(task, playbook) for task in playbook.tasks}
        trainers = [task for task in playbook.tasks if script_arguments(texts[id(task)], course.script)]
        running = [task for task in trainers if playbook.runs(task)]
        verdicts = [(task, self._judge(task, texts, playbook, course)) for task in running]
        # A container run whose command is elsewhere (a compose file, the image's CMD) may train.
        verdicts += [
            (task, Verdict(None, f"trains the DCGAN: it runs a container whose command does not name {course.script}"))
            for task in playbook.tasks
            if task not in trainers and is_container_run(task) and playbook.runs(task)
        ]
        missing = f"no task that runs trains the DCGAN ({course.script})"
        if trainers and not running:
            missing += f"; the one at line {trainers[0].line} never runs on a plain run (rescue, handler, switched off"
            missing += " or after a task that always fails)"
        yield from self.judge_step(
            playbook,
            verdicts,
            missing,
            f"run 'python {course.script} --dataset {course.dataset} --test_data --num_epochs {course.epochs}' in the"
            f" image, with its standard output in {course.output_name}",
        )

    def _judge(self, task: Task, texts: dict, playbook: Playbook, course: Course) -> Verdict:
        calls = script_arguments(texts[id(task)], course.script) or []
        verdicts = [trains_as_asked(arguments, course) for arguments in calls]
        verdict = next((v for v in verdicts if v.done), next((v for v in verdicts if v.done is None), verdicts[0]))
        if not verdict.done:
            return verdict
        if self._output_saved(task, texts, playbook, course.output_name):
            return DONE
        return Verdict(False, f"does not send the training's standard output to {course.output_name}")

    @staticmethod
    def _output_saved(task: Task, texts: dict, playbook: Playbook, output_name: str) -> bool:
        if writes_output(texts[id(task)], output_name) or saves_registered_output(task, playbook, output_name):
            return True
        # A container run apart from its output: `docker logs <name> > output.txt` later on.
        return any(
            writes_output(texts[id(other)], output_name) and "logs" in commands.shell_words(texts[id(other)])
            for other in playbook.tasks
            if playbook.runs(other)
        )
