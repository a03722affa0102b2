"""The Jinja2 sandbox form letters run in, with budgets of time and size per recipient.

Jinja's immutable sandbox stops access to internals; this one also stops a template from
building more than a recipient's budget allows: ranges, repetition (``*``, ``+``, ``~``),
printf and ``str.format`` widths, the growing filters (``center``, ``indent``, ``join``,
``replace``, ``format``) and macro results are checked *before* the work is done, and the
clock is looked at on every call, operator, attribute, range step and output chunk.

That is cooperative: a loop with no call in it is not interrupted here. The hard stop is
the process the worker and the API render in (:mod:`sendas.render_process`), which is
abandoned past the budget.
"""

from __future__ import annotations

import re
import string
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

from jinja2 import StrictUndefined, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.filters import FILTERS
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace

from sendas.errors import TemplateOverBudget, TemplateTimedOut

MAX_SEQUENCE = 100_000
"""Items (or characters) one ``*`` or ``+`` may build."""
MAX_EXPONENT = 64
MAX_RANGE = 10_000
"""Items one ``range()`` may have (Jinja's own cap is 100,000)."""
MAX_WIDTH = 1_000
"""Largest width or precision in a ``%`` or ``str.format`` specification, or ``center``."""
_CHECK_EVERY = 256  # range steps between looks at the clock


@dataclass(frozen=True)
class Limits:
    """What one recipient's render may cost: ``seconds`` of time, ``max_output`` characters
    (all parts together, and any one string built on the way)."""

    seconds: float = 2.0
    max_output: int = 1_000_000

    def timed_out(self) -> TemplateTimedOut:
        return TemplateTimedOut(
            f"the template took longer than {self.seconds:g} s to render for this recipient"
        )

    def too_big(self) -> TemplateOverBudget:
        return TemplateOverBudget(
            f"the rendered output is over {self.max_output} characters for this recipient"
        )


class _Budget(threading.local):
    limits: Limits | None = None
    deadline: float = 0.0
    written: int = 0


_BUDGET = _Budget()


class budget:
    """``with budget(limits): ...``: the limits of the renders in this thread until exit."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits

    def __enter__(self) -> None:
        _BUDGET.limits = self.limits
        _BUDGET.deadline = time.monotonic() + self.limits.seconds
        _BUDGET.written = 0

    def __exit__(self, *exc: object) -> None:
        _BUDGET.limits = None


def tick() -> None:
    """Raise :class:`TemplateOverBudget` once the current render is past its time."""
    limits = _BUDGET.limits
    if limits is not None and time.monotonic() > _BUDGET.deadline:
        raise limits.timed_out()


def wrote(chars: int) -> None:
    """Count ``chars`` of output against the current render's size budget."""
    limits = _BUDGET.limits
    if limits is None:
        return
    _BUDGET.written += chars
    if _BUDGET.written > limits.max_output:
        raise limits.too_big()
    tick()


def _max_string() -> int:
    limits = _BUDGET.limits
    return limits.max_output if limits is not None else Limits().max_output


def _sized(length: int) -> None:
    """Refuse a string about to be ``length`` characters long, past the output budget."""
    if length > _max_string():
        limits = _BUDGET.limits or Limits()
        raise limits.too_big()


def _length(value: Any) -> int:
    return len(value) if isinstance(value, str | list | tuple) else 0


def _repeated(left: Any, right: Any) -> int:
    """The length ``left * right`` would have, for a sequence times a count (else 0)."""
    for seq, count in ((left, right), (right, left)):
        if isinstance(seq, str | list | tuple) and isinstance(count, int):
            return len(seq) * count
    return 0


# --- ranges ------------------------------------------------------------------------------------


class _Range(Sequence[int]):
    """``range()`` in a template: at most :data:`MAX_RANGE` items, the clock read as it runs."""

    def __init__(self, *args: int) -> None:
        self._range = range(*args)
        if len(self._range) > MAX_RANGE:
            raise SecurityError(f"a range of more than {MAX_RANGE} items")

    def __len__(self) -> int:
        return len(self._range)

    @overload
    def __getitem__(self, index: int) -> int: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[int]: ...
    def __getitem__(self, index: int | slice) -> int | Sequence[int]:
        return self._range[index]

    def __iter__(self) -> Iterator[int]:
        for i, value in enumerate(self._range):
            if i % _CHECK_EVERY == 0:
                tick()
            yield value

    def __repr__(self) -> str:
        return repr(self._range)


# --- format specifications ---------------------------------------------------------------------

_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d*))?")
_NUMBER = re.compile(r"\d+")


def _check_printf(fmt: str) -> None:
    for match in _PRINTF.finditer(fmt):
        for number in match.groups():
            if number == "*":
                raise SecurityError("a '*' width in a format")
            if number and int(number) > MAX_WIDTH:
                raise SecurityError(f"a format width or precision over {MAX_WIDTH}")


def _check_format_spec(fmt: str) -> None:
    for _, _, spec, _ in string.Formatter().parse(fmt):
        if not spec:
            continue
        if "{" in spec:
            raise SecurityError("a nested field in a format specification")
        if any(int(n) > MAX_WIDTH for n in _NUMBER.findall(spec)):
            raise SecurityError(f"a format width or precision over {MAX_WIDTH}")


# --- filters that can grow a string ------------------------------------------------------------


def _format(value: Any, *args: Any, **kwargs: Any) -> str:
    _check_printf(str(value))
    result: str = FILTERS["format"](value, *args, **kwargs)
    return result


def _center(value: Any, width: int = 80) -> str:
    if isinstance(width, int) and width > MAX_WIDTH:
        raise SecurityError(f"a width over {MAX_WIDTH}")
    result: str = FILTERS["center"](value, width)
    return result


def _indent(s: Any, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    pad = width if isinstance(width, str) else " " * min(max(width, 0), MAX_WIDTH + 1)
    if isinstance(width, int) and width > MAX_WIDTH:
        raise SecurityError(f"an indent over {MAX_WIDTH}")
    text = str(s)
    _sized(len(text) + len(pad) * (text.count("\n") + 1))
    result: str = FILTERS["indent"](s, width, first, blank)
    return result


def _join(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> str:
    items = list(value)
    if len(items) > MAX_SEQUENCE:
        raise SecurityError(f"a join of more than {MAX_SEQUENCE} items")
    if attribute is None:
        _sized(len(str(d)) * max(len(items) - 1, 0) + sum(len(str(x)) for x in items))
    result: str = FILTERS["join"](eval_ctx, items, d, attribute)
    _sized(len(result))
    return result


def _replace(eval_ctx: Any, s: Any, old: Any, new: Any, count: int | None = None) -> str:
    text, old_s, new_s = str(s), str(old), str(new)
    hits = text.count(old_s) if old_s else len(text) + 1
    if count is not None and count >= 0:
        hits = min(hits, count)
    _sized(len(text) + hits * max(len(new_s) - len(old_s), 0))
    result: str = FILTERS["replace"](eval_ctx, s, old, new, count)
    return result


_join.jinja_pass_arg = FILTERS["join"].jinja_pass_arg  # type: ignore[attr-defined]
_replace.jinja_pass_arg = FILTERS["replace"].jinja_pass_arg  # type: ignore[attr-defined]

_FILTERS: dict[str, Callable[..., Any]] = {
    "format": _format,
    "center": _center,
    "indent": _indent,
    "join": _join,
    "replace": _replace,
}


class _Namespace(Namespace):
    """``namespace()``: a value set on it is checked, so a loop cannot double a string."""

    def __setitem__(self, name: str, value: Any) -> None:
        _sized(_length(value))
        tick()
        super().__setitem__(name, value)


# --- the environment ---------------------------------------------------------------------------


class _Generator(CodeGenerator):
    """Compiles ``a ~ b ~ c`` to a join whose size is checked before it is built."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.checked_concat(")
        super().visit_Concat(node, frame)
        self.write(")")


class Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox within the current :class:`budget`."""

    code_generator_class = _Generator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, *, autoescape: bool) -> None:
        super().__init__(
            undefined=StrictUndefined, autoescape=autoescape, keep_trailing_newline=True
        )
        self.globals["range"] = _Range
        self.globals["namespace"] = _Namespace
        self.globals.pop("lipsum", None)  # builds text of any size on request
        self.filters.update(_FILTERS)

    def checked_concat(self, joined: str) -> str:
        _sized(len(joined))
        tick()
        return joined

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        tick()
        if operator == "**" and isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"exponent larger than {MAX_EXPONENT}")
        if operator == "*" and _repeated(left, right) > MAX_SEQUENCE:
            raise SecurityError(f"a result longer than {MAX_SEQUENCE} items")
        if operator == "+" and _length(left) + _length(right) > MAX_SEQUENCE:
            raise SecurityError(f"a result longer than {MAX_SEQUENCE} items")
        if operator == "%" and isinstance(left, str):
            _check_printf(left)
        return super().call_binop(context, operator, left, right)

    def getattr(self, obj: Any, attribute: str) -> Any:
        tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        tick()
        return super().getitem(obj, argument)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        _check_format_spec(value.__self__)
        return wrapped

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        tick()
        for value in (*args, *kwargs.values()):
            _sized(_length(value))
        result = super().call(__context, __obj, *args, **kwargs)
        _sized(_length(result))  # a macro's output, built in a buffer
        return result
