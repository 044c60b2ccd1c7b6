"""Reading a playbook as plain data that remembers the line of every mapping.

Nothing in the file is executed or templated here; Ansible's own tags
(``!unsafe``, ``!vault``) are read as the strings they wrap.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ..errors import HarnessError

# Nodes a playbook may hold once its aliases are expanded. A course playbook
# has a few thousand; an alias bomb (each level aliasing the last one ten
# times) reaches billions with a few lines, and every walk over it would too.
MAX_EXPANDED_NODES = 200_000


class PlaybookError(HarnessError):
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
    loader = _LineLoader(text)  # a SafeLoader subclass: no Python objects
    try:
        node = loader.get_single_node()
        if node is not None and (size := expanded_size(node)) > MAX_EXPANDED_NODES:
            raise PlaybookError(
                f"{path}: its YAML aliases expand to more than {MAX_EXPANDED_NODES:,} values"
                f" ({'over a billion' if size > 10**9 else f'{size:,}'}); write the values out instead of"
                " nesting aliases"
            )
        data = loader.construct_document(node) if node is not None else None
    except RecursionError:
        raise PlaybookError(f"{path}: the YAML nests too deep to read; flatten it") from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = error.problem or error.context or "invalid YAML"
        hint = "replace tabs with spaces" if "\t" in _line_at(text, mark) else "check the indentation"
        raise PlaybookError(f"{where}: YAML syntax error: {problem}; {hint}") from None
    except yaml.YAMLError as error:
        raise PlaybookError(f"{path}: YAML error: {str(error).splitlines()[0]}") from None
    finally:
        loader.dispose()
    if not isinstance(data, list):
        raise PlaybookError(
            f"{path}: a playbook is a YAML list of plays, but this file holds a {type(data).__name__};"
            " start each play with '- name:'"
        )
    return data


def expanded_size(root: yaml.Node) -> int:
    """How many values the document holds with every alias written out, in time linear in its nodes."""
    sizes: dict[int, int] = {}
    # Children first, without recursion: aliases make the nodes a DAG, so
    # each node's size is computed once and shared by every alias of it.
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        children = _children(node)
        if children_done or not children:
            sizes[id(node)] = min(1 + sum(sizes.get(id(child), 0) for child in children), 10**12)
            continue
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _line_at(text: str, mark) -> str:
    if mark is None:
        return ""
    lines = text.splitlines()
    return lines[mark.line] if mark.line < len(lines) else ""
