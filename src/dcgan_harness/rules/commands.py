"""What a shell or command task runs, read word by word.

A regular expression over the raw text misses ``docker --host x build``,
``docker buildx build``, ``docker compose up`` or the ``argv:`` list form;
here the command is split into shell words, nested ``sh -c '...'`` strings
are opened, and each docker invocation is reduced to its subcommand path.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Iterator
from typing import Any

from .templates import JINJA_EXPRESSION, Unknown

COMMAND_MODULES = frozenset({"shell", "command", "raw"})
# Global options of docker and docker compose that take a value.
OPTIONS_WITH_VALUE = frozenset(
    {
        "-H", "--host", "-c", "--context", "--config", "-l", "--log-level", "--tlscacert", "--tlscert", "--tlskey",
        "-f", "--file", "-p", "--project-name", "--profile", "--env-file", "--project-directory", "--ansi",
        "--parallel", "--progress",
    }
)
SEPARATORS = frozenset({";", "&&", "||", "|", "&", "(", ")", "\n"})
BUILD_COMMANDS = frozenset(
    {("build",), ("image", "build"), ("buildx", "build"), ("buildx", "b"), ("builder", "build"), ("compose", "build")}
)
GROUP_COMMANDS = frozenset({"compose", "image", "buildx", "builder", "container"})
# Runs that return while the container still trains, unless told to stay attached.
FOREGROUND_RUNS = frozenset({("run",), ("container", "run"), ("compose", "up"), ("compose", "run")})
STARTS = frozenset({("start",), ("container", "start")})
DETACH = re.compile(r"^(--detach(=true)?|-[a-zA-Z]*d[a-zA-Z]*)$")
ATTACH = re.compile(r"^(--attach(=true)?|-[a-zA-Z]*a[a-zA-Z]*)$")
RUN_COMMANDS = frozenset(
    {("run",), ("container", "run"), ("start",), ("container", "start"), ("compose", "up"), ("compose", "run")}
)


def command_text(args: dict) -> str:
    """The command line of a shell/command/raw task, whichever way it was written."""
    if isinstance(args.get("argv"), list):
        return shlex.join(str(word) for word in args["argv"])
    return str(args.get("cmd") or args.get("_raw_params") or "")




def task_command(task) -> str:
    """The command line of a shell/command/raw task with the playbook's variables filled in."""
    if task.module not in COMMAND_MODULES:
        return ""
    try:
        return command_text(task.resolver(lenient=True).render(task.args))
    except Unknown:
        return command_text(task.args)


def shell_words(text: str) -> list[str]:
    # A Jinja expression left in a command is one word, whatever blanks it holds.
    text = JINJA_EXPRESSION.sub("{?}", text)
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|()")
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        return list(lexer)
    except ValueError:  # an unbalanced quote: fall back on blanks
        return text.split()


def docker_invocations(text: str, depth: int = 0) -> Iterator[tuple[str, ...]]:
    """The subcommand path of every docker call, e.g. ('buildx', 'build') or ('compose', 'up', '--build')."""
    words = shell_words(text)
    for index, word in enumerate(words):
        if depth < 3 and any(blank in word for blank in " \t\n;&|"):
            yield from docker_invocations(word, depth + 1)
        program = posixpath.basename(word)
        if program == "docker":
            yield _subcommand(words[index + 1:])
        elif program == "docker-compose":
            yield ("compose", *_subcommand(words[index + 1:]))


def _subcommand(words: list[str]) -> tuple[str, ...]:
    """The subcommand path (at most two words), then every option up to the end of the command."""
    path: list[str] = []
    flags: list[str] = []
    skip = complete = False
    for word in words:
        if word in SEPARATORS:
            break
        if skip:
            skip = False
            continue
        if word.startswith("-"):
            skip = not complete and word in OPTIONS_WITH_VALUE
            flags.append(word)
        elif not complete:
            path.append(word)
            complete = len(path) == 2 or path[0] not in GROUP_COMMANDS
    return (*path, *flags)


def builds_image(text: str) -> bool:
    for invocation in docker_invocations(text):
        if invocation[:2] in BUILD_COMMANDS or invocation[:1] in BUILD_COMMANDS:
            return True
        if invocation[:2] == ("compose", "up") and "--build" in invocation:
            return True
    return False


def runs_container(text: str) -> bool:
    return any(
        invocation[:2] in RUN_COMMANDS or invocation[:1] in RUN_COMMANDS for invocation in docker_invocations(text)
    )


def _path(invocation: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(word for word in invocation if not word.startswith("-"))


def runs_detached(text: str) -> bool:
    """A docker run, compose up or start that returns while the container still runs."""
    for invocation in docker_invocations(text):
        path, flags = _path(invocation), [word for word in invocation if word.startswith("-")]
        if (path[:1] in FOREGROUND_RUNS or path[:2] in FOREGROUND_RUNS) and any(map(DETACH.match, flags)):
            return True
        if (path[:1] in STARTS or path[:2] in STARTS) and not any(map(ATTACH.match, flags)):
            return True
    return False


def waits_for_container(text: str) -> bool:
    """docker wait, or logs followed to the container's end."""
    for invocation in docker_invocations(text):
        path = _path(invocation)
        if path[:1] == ("wait",) or path[:2] == ("container", "wait"):
            return True
        if (path[:1] == ("logs",) or path[:2] == ("compose", "logs")) and {"-f", "--follow"} & set(invocation):
            return True
    return False


def mentions(value: Any, needle: str) -> bool:
    if isinstance(value, str):
        return needle in value
    if isinstance(value, dict):
        return any(mentions(item, needle) for item in value.values())
    if isinstance(value, list):
        return any(mentions(item, needle) for item in value)
    return False
