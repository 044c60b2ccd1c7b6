"""Reading the Jinja in a playbook without running any of it.

The rules need two things from templates: which lookups they call (a lookup
runs on the machine running Ansible) and, for a few keywords, the value they
render to from the playbook's own variables (``async: "{{ build_async }}"``).
Students' files are untrusted, so rendering happens in Jinja's immutable
sandbox with no lookups, no Ansible filters and no large results; anything
that needs more than that is "unknown", never guessed.
"""

from __future__ import annotations

import operator
import posixpath
import re
from collections.abc import Iterator
from typing import Any

from jinja2 import ChainableUndefined, StrictUndefined, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

TEMPLATE_MARKERS = ("{{", "{%")
# A Jinja expression, and a statement or comment, inside a larger text.
JINJA_EXPRESSION = re.compile(r"\{\{.*?\}\}", re.DOTALL)
JINJA_STATEMENT = re.compile(r"\{%.*?%\}|\{#.*?#\}", re.DOTALL)
# Keywords whose string value is a bare Jinja expression, not a template.
CONDITIONAL_KEYWORDS = ("when", "changed_when", "failed_when", "until")
# Arguments that take an expression too: assert's `that` and debug's `var`.
EXPRESSION_KEYS = frozenset({*CONDITIONAL_KEYWORDS, "that", "var"})
LOOKUP_FUNCTIONS = frozenset({"lookup", "query", "q"})
# Longest string or list a rendered value may become.
MAX_RESULT = 10_000
# Largest integer (in bits) arithmetic may build: a tower of ** or repeated
# squaring otherwise takes minutes to hours of the checker's CPU.
MAX_INT_BITS = 4096
MAX_DEPTH = 20
TRUE_WORDS = frozenset({"true", "yes", "on", "1", "y", "t"})
FALSE_WORDS = frozenset({"false", "no", "off", "0", "n", "f", ""})


class Unknown(Exception):
    """The value depends on something the playbook alone does not settle."""


class TooLarge(Unknown):
    """The value would take more memory or time to compute than any real playbook needs."""


class _Refused(SecurityError):
    """The sandbox refused to build a value this large."""


class Placeholder(ChainableUndefined):
    """Stands in for an unknown variable in a path, so the known parts still show."""

    def __str__(self) -> str:
        return "{?}"


def _bool_filter(value: Any) -> bool:
    truth = to_bool(value)
    if truth is None:
        raise Unknown(f"{value!r} is not a boolean")
    return truth


def _bits(number: int) -> int:
    return abs(number).bit_length()


def _bounded(result: Any) -> Any:
    if hasattr(result, "__len__") and len(result) > MAX_RESULT:
        raise _Refused("result too large")
    return result


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, narrowed to what the checked values need.

    Only a few filters exist, no function but ``range`` may be called (no
    ``str.ljust(10**9)``), and ``*``, ``**`` and ``%`` refuse to build huge
    values, so a hostile template can neither run code nor exhaust the
    grader's memory.
    """

    intercepted_binops = frozenset({"*", "**", "%"})

    def call_binop(self, context, operator_name, left, right):
        if operator_name == "**":
            if isinstance(right, (int, float)) and abs(right) > 64:
                raise _Refused("exponent too large")
            if isinstance(left, int) and isinstance(right, int) and _bits(left) * max(right, 0) > MAX_INT_BITS:
                raise _Refused("power too large")
            return left**right
        if operator_name == "%":
            if isinstance(left, str):
                raise SecurityError("string formatting is not rendered here")
            return left % right
        if isinstance(left, (int, float)) and isinstance(right, (int, float)):
            if isinstance(left, int) and isinstance(right, int) and _bits(left) + _bits(right) > MAX_INT_BITS:
                raise _Refused("product too large")
            return left * right
        count, sequence = (left, right) if isinstance(left, int) else (right, left)
        if isinstance(count, int) and hasattr(sequence, "__len__") and count * len(sequence) > MAX_RESULT:
            raise _Refused("repetition too large")
        return _bounded(operator.mul(left, right))

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 - Jinja's own signature
        if __obj is not __self.globals.get("range"):
            raise SecurityError("only range() may be called")
        return super().call(__context, __obj, *args, **kwargs)


# What basename gives for an unknown path: one folder entry, never '..' or a '/'.
UNKNOWN_FILE_NAME = "<file name>"


def _basename(value: Any) -> Any:
    return posixpath.basename(value) if isinstance(value, str) else UNKNOWN_FILE_NAME


def _dirname(value: Any) -> Any:
    return posixpath.dirname(value) if isinstance(value, str) else Placeholder(name="path")


# Filters whose result is no bigger than what they are given.
SAFE_FILTERS = (
    "default", "int", "float", "string", "lower", "upper", "trim", "length", "count", "first", "last", "abs",
    "round", "join", "min", "max",
)


class _AnyName(dict):
    """Filters or tests Jinja lacks (Ansible's own) yield a placeholder, not an error."""

    def __missing__(self, name):
        return lambda *args, **kwargs: Placeholder(name=name)

    def get(self, name, default=None):
        return self[name]


def _environment(undefined) -> _Sandbox:
    environment = _Sandbox(undefined=undefined)
    filters = {name: environment.filters[name] for name in SAFE_FILTERS}
    filters.update(d=filters["default"], bool=_bool_filter, basename=_basename, dirname=_dirname)
    environment.filters = _AnyName(filters) if undefined is Placeholder else filters
    if undefined is Placeholder:
        environment.tests = _AnyName(environment.tests)
    return environment


STRICT = _environment(StrictUndefined)
LENIENT = _environment(Placeholder)


def is_template(value: Any) -> bool:
    return isinstance(value, str) and any(marker in value for marker in TEMPLATE_MARKERS)


def to_bool(value: Any) -> bool | None:
    """Ansible's reading of a boolean keyword; None when it is not one."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS:
        return True
    if isinstance(value, str) and value.strip().lower() in FALSE_WORDS:
        return False
    return None


# --- Lookups ----------------------------------------------------------------------


def parse(source: str, expression: bool = False) -> nodes.Template | None:
    """Jinja's syntax tree of a template, or of a bare expression; None if Jinja cannot read it."""
    text = "{{ (" + source + ") }}" if expression and not is_template(source) else source
    try:
        return STRICT.parse(text)
    except Exception:  # noqa: BLE001 - any Jinja error means Ansible cannot run it either
        return None


def lookup_calls(source: str, expression: bool = False) -> Iterator[str | None]:
    """The plugin name of every lookup the text calls; None for one not named by a literal.

    Every mention of lookup/query/q counts, called or not, so that
    ``{% set run = lookup %}`` cannot hide a call behind another name.
    """
    tree = parse(source, expression)
    if tree is None:
        return
    called = set()
    for call in tree.find_all(nodes.Call):
        if isinstance(call.node, nodes.Name) and call.node.name in LOOKUP_FUNCTIONS:
            called.add(id(call.node))
            yield _literal_plugin(call)
    for name in tree.find_all(nodes.Name):
        if name.name in LOOKUP_FUNCTIONS and id(name) not in called:
            yield None


def _literal_plugin(call: nodes.Call) -> str | None:
    if call.dyn_args is not None or not call.args:
        return None
    first = call.args[0]
    if isinstance(first, nodes.Const) and isinstance(first.value, str):
        return first.value
    return None


def strings_in(value: Any, key: str = "") -> Iterator[tuple[str, bool]]:
    """Every string inside value, with whether it is a bare expression."""
    if isinstance(value, str):
        yield value, key in EXPRESSION_KEYS
    elif isinstance(value, dict):
        for child_key, child in value.items():
            if isinstance(child_key, str):
                yield child_key, False
            yield from strings_in(child, str(child_key))
    elif isinstance(value, list):
        for child in value:
            yield from strings_in(child, key)


# --- Rendering from the playbook's variables ------------------------------------------


class Resolver:
    """Renders values with a fixed set of variables, themselves rendered on demand."""

    def __init__(self, variables: dict, lenient: bool = False):
        self.variables = variables
        self.environment = LENIENT if lenient else STRICT
        self._done: dict[str, Any] = {}
        self._busy: set[str] = set()

    def render(self, value: Any, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise Unknown("variables nest too deep")
        if isinstance(value, list):
            return [self.render(item, depth + 1) for item in value]
        if isinstance(value, dict):
            return {key: self.render(item, depth + 1) for key, item in value.items()}
        if not is_template(value):
            return value
        if "{%" in value:
            # Loops and assignments can take unbounded time; no checked value needs them.
            raise Unknown("templates with {% statements %} are not rendered here")
        try:
            template = self.environment.from_string(value)
            names = self._free_names(self.environment.parse(value))
            context = {name: self.variable(name, depth + 1) for name in names if self._known(name, depth + 1)}
            return _bounded(template.render(context))
        except Unknown:
            raise
        except _Refused as error:
            raise TooLarge(str(error)) from None
        except Exception as error:  # noqa: BLE001 - undefined names, sandbox refusals, bad syntax
            raise Unknown(str(error).splitlines()[0] if str(error) else type(error).__name__) from None

    def evaluate(self, expression: str) -> Any:
        """The value of a bare expression such as a ``when`` condition."""
        try:
            compiled = STRICT.compile_expression(expression, undefined_to_none=False)
            names = self._free_names(STRICT.parse("{{ (" + expression + ") }}"))
            context = {name: self.variable(name, 1) for name in names if self._known(name, 1)}
            return compiled(**context)
        except Unknown:
            raise
        except _Refused as error:
            raise TooLarge(str(error)) from None
        except Exception as error:  # noqa: BLE001 - as in render
            raise Unknown(str(error).splitlines()[0] if str(error) else type(error).__name__) from None

    def _free_names(self, tree: nodes.Template) -> set[str]:
        """Variables the text reads; in strict mode one the playbook does not define is Unknown.

        Facts, registered results and magic variables exist only at run
        time, so even ``x is defined`` cannot be settled for them here.
        """
        names = meta.find_undeclared_variables(tree) - set(self.environment.globals)
        if self.environment is STRICT and (missing := names - set(self.variables)):
            raise Unknown(f"{', '.join(sorted(missing))} not defined in the playbook")
        return names

    def variable(self, name: str, depth: int) -> Any:
        if name in self._done:
            return self._done[name]
        if name in self._busy:
            raise Unknown(f"variable {name} refers to itself")
        self._busy.add(name)
        try:
            value = self.render(self.variables[name], depth)
        finally:
            self._busy.discard(name)
        self._done[name] = value
        return value

    def _known(self, name: str, depth: int) -> bool:
        if name not in self.variables:
            return False
        if self.environment is STRICT:
            return True
        # Lenient rendering leaves a variable it cannot render as a placeholder.
        try:
            self.variable(name, depth)
        except Unknown:
            return False
        return True


def oversized(condition: Any, resolver: Resolver) -> str | None:
    """Why a condition cannot be evaluated in reasonable time (a tower of **, a huge repetition), if so."""
    if not isinstance(condition, str):
        return None
    try:
        if is_template(condition):
            resolver.render(condition)
        else:
            resolver.evaluate(condition)
    except TooLarge as error:
        return str(error)
    except Unknown:
        return None
    return None


def condition_value(condition: Any, resolver: Resolver) -> bool | None:
    """True or False when a ``when`` condition is settled by the playbook alone, else None."""
    if isinstance(condition, (bool, int)) and not isinstance(condition, str):
        return bool(condition)
    if not isinstance(condition, str):
        return None
    try:
        if is_template(condition):
            rendered = resolver.render(condition)
            truth = to_bool(rendered)
            return truth if truth is not None else _truth_of(resolver.evaluate(rendered))
        return _truth_of(resolver.evaluate(condition))
    except Unknown:
        return None


def _truth_of(value: Any) -> bool | None:
    if isinstance(value, (StrictUndefined, ChainableUndefined)):
        return None
    return bool(value)


# --- Python internals ------------------------------------------------------------------

# Names that lead from any object to Python's internals: with them a template
# reaches os.popen on the machine running Ansible (ansible-core 2.15 renders
# `lipsum.__globals__` unsandboxed). Every name starting with an underscore is
# one too (`__globals__`, `_TemplateReference__context`).
INTERNAL_NAMES = frozenset(
    {
        "mro", "globals", "builtins", "subclasses", "func_globals", "func_code", "f_globals", "f_locals", "f_back",
        "f_builtins", "gi_frame", "gi_code", "cr_frame", "ag_frame", "tb_frame", "tb_next", "im_func", "im_self",
    }
)
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# An underscore name: at least one underscore, then a letter or digit ('_' and
# '__' alone are harmless separators, as in replace('-', '_')).
UNDERSCORE_NAME = re.compile(r"_+[A-Za-z0-9]")


def internal_name(name: Any) -> bool:
    return isinstance(name, str) and (UNDERSCORE_NAME.match(name) is not None or name in INTERNAL_NAMES)


def _mentions_internal(text: str) -> bool:
    """A string that, as an attribute path or format field, names an internal."""
    return any(internal_name(word) for word in IDENTIFIER.findall(text))


def internal_reaches(source: str, expression: bool = False) -> list[str]:
    """How the text reaches Python internals, one phrase per way; empty when it does not.

    Attribute and item names are judged whatever the spelling: ``x.__class__``,
    ``x['__class__']``, ``x|attr('__class__')``, ``'{0.__class__}'.format(x)``,
    and a key computed from strings (``x['_' ~ '_class__']``) counts too, since
    its value cannot be told without rendering it.
    """
    tree = parse(source, expression)
    if tree is None:
        return []
    found: list[str] = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter, nodes.Const, nodes.Call)):
        if isinstance(node, nodes.Getattr) and internal_name(node.attr):
            found.append(f".{node.attr}")
        elif isinstance(node, nodes.Getitem) and _computed_key(node.arg):
            found.append("a key computed from strings")
        elif isinstance(node, nodes.Filter) and node.name == "attr" and not _literal(node.args[:1]):
            found.append("attr() of a computed name")
        elif isinstance(node, nodes.Filter) and not _literal([p.value for p in node.kwargs if p.key == "attribute"]):
            found.append(f"{node.name}() given a computed attribute")
        elif isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr) and node.node.attr in {
            "format", "format_map"
        } and not _literal(node.args[:1]) and not isinstance(node.node.node, nodes.Const):
            found.append("str.format of a computed format string")
        elif isinstance(node, nodes.Const) and isinstance(node.value, str) and _mentions_internal(node.value):
            if _names_attribute(node.value):
                found.append(repr(node.value))
    return list(dict.fromkeys(found))


def _names_attribute(text: str) -> bool:
    """A literal that can act as an attribute name or path, or a format field reaching one."""
    if IDENTIFIER.fullmatch(text) or re.fullmatch(r"[A-Za-z_][\w.]*", text):
        return any(internal_name(part) for part in text.split("."))
    # Format fields: '{0.__globals__}', '{x[__builtins__]}'.
    return any(
        _mentions_internal(field) for field in re.findall(r"\{[^{}]*[.\[][^{}]*\}", text)
    )


def _literal(args: list) -> bool:
    return all(isinstance(arg, nodes.Const) for arg in args)


def _computed_key(key: nodes.Node) -> bool:
    """A subscript whose key is built by string operations rather than named or spelt out."""
    if isinstance(key, (nodes.Const, nodes.Name, nodes.Getattr, nodes.Getitem, nodes.Slice)):
        return False
    if isinstance(key, nodes.Filter) and key.name in {"first", "last", "int", "length", "count"}:
        return False
    if isinstance(key, (nodes.Add, nodes.Concat)):
        # A key that starts with a letter cannot be an underscore name.
        first = key.left if isinstance(key, nodes.Add) else key.nodes[0]
        return not (isinstance(first, nodes.Const) and isinstance(first.value, str) and first.value[:1].isalpha()
                    and first.value not in INTERNAL_NAMES)
    if isinstance(key, (nodes.Sub, nodes.Mul, nodes.Div, nodes.FloorDiv, nodes.Mod, nodes.Neg, nodes.Pos)):
        return any(isinstance(child, nodes.Const) and isinstance(child.value, str) for child in key.find_all(nodes.Const))
    return True
