"""Reading a playbook as plain data that remembers the line of every mapping.

Nothing in the file is executed or templated here; Ansible's own tags
(``!unsafe``, ``!vault``) are read as the strings they wrap.
"""

from __future__ import annotations

from pathlib import Path

import yaml


class PlaybookError(Exception):
    """The playbook cannot be read as YAML; the message says where and why."""


class LineMap(dict):
    """A mapping that knows the line it starts on (1-based)."""

    line = 0


class _LineLoader(yaml.SafeLoader):
    """Safe loader whose mappings remember the line they start on."""

    def construct_mapping(self, node, deep=False):
        mapping = LineMap(super().construct_mapping(node, deep=deep))
        mapping.line = node.start_mark.line + 1
        return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _LineLoader.construct_mapping)
_LineLoader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))
_LineLoader.add_constructor("!vault", lambda loader, node: loader.construct_scalar(node))


def line_of(node, default: int = 0) -> int:
    return getattr(node, "line", default)


def load_playbook(path: str | Path) -> list:
    """Parse a playbook, turning every YAML problem into a one-line PlaybookError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlaybookError(f"{path}: no such file; pass the path of your configure.yaml") from None
    except IsADirectoryError:
        raise PlaybookError(f"{path}: is a folder; pass the path of your configure.yaml") from None
    except (OSError, UnicodeDecodeError) as error:
        raise PlaybookError(f"{path}: cannot be read ({error}); save it as UTF-8 text") from None
    return parse_playbook(text, path)


def parse_playbook(text: str, path: str | Path = "<playbook>") -> list:
    try:
        data = yaml.load(text, Loader=_LineLoader)  # a SafeLoader subclass: no Python objects
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = error.problem or error.context or "invalid YAML"
        hint = "replace tabs with spaces" if "\t" in _line_at(text, mark) else "check the indentation"
        raise PlaybookError(f"{where}: YAML syntax error: {problem}; {hint}") from None
    except yaml.YAMLError as error:
        raise PlaybookError(f"{path}: YAML error: {str(error).splitlines()[0]}") from None
    if not isinstance(data, list):
        raise PlaybookError(
            f"{path}: a playbook is a YAML list of plays, but this file holds a {type(data).__name__};"
            " start each play with '- name:'"
        )
    return data


def _line_at(text: str, mark) -> str:
    if mark is None:
        return ""
    lines = text.splitlines()
    return lines[mark.line] if mark.line < len(lines) else ""
