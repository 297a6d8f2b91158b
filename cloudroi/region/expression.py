"""Band math: ``expression=(b4-b3)/(b4+b3)``, several outputs separated by ``;``.

An expression is parsed with ``ast`` and compiled, node by node, into closures over numpy; it is
never evaluated by Python. Only these are accepted: numbers, band references ``b1``..``bN``
(1-based, ``B1`` too), ``+ - * / // % **``, unary ``-``/``+``, comparisons (``a < b < c``
chains), ``& | ^ ~`` on conditions, and the functions of ``FUNCTIONS`` (``sqrt``, ``log``,
``where``, ``minimum``, ``clip``...). Everything else (names, attributes, subscripts, lambdas,
keyword arguments...) is an ``ExpressionError`` naming it. The text is bounded
(``MAX_EXPRESSION_CHARS``), and so are its nodes (``MAX_NODES``), nesting (``MAX_DEPTH``) and
outputs (``MAX_OUTPUTS``).

Values are float64 while they are computed (an integer power cannot grow without bound: it
overflows to inf at once) and stored as float32, or float64 for float64 sources. As rio-tiler
does, NaN becomes 0 and +-inf the dtype's largest finite values (``numpy.nan_to_num``); no
floating-point warning escapes. Evaluation runs over strips of rows (``STRIP_PIXELS``), so its
temporaries hold a strip, not the whole region.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import BandError, ExpressionError

__all__ = [
    "FUNCTIONS",
    "MAX_DEPTH",
    "MAX_EXPRESSION_CHARS",
    "MAX_NODES",
    "MAX_OUTPUTS",
    "Expression",
    "ExpressionError",
    "parse_expression",
]

#: Longest expression text accepted.
MAX_EXPRESSION_CHARS = 2048
#: Most syntax nodes (numbers, band references, operations, calls) over all outputs.
MAX_NODES = 512
#: Deepest nesting of operations.
MAX_DEPTH = 64
#: Most outputs (``;``-separated expressions) one expression may have.
MAX_OUTPUTS = 32
#: Pixels evaluated at a time (whole rows, at least one).
STRIP_PIXELS = 1 << 18

Array = npt.NDArray[Any]
#: A compiled node: the referenced bands' float64 strips (in ``Expression.bands`` order) -> a
#: float64 or bool array (or a scalar, for a node without band).
Node = Callable[[Sequence[Array]], Any]

_BAND = re.compile(r"^[bB]([1-9][0-9]{0,4})$")


def _unary(fn: Callable[[Any], Any]) -> tuple[int, Callable[..., Any], bool]:
    return 1, fn, False


#: name -> (arity, numpy function, whether it returns a condition)
FUNCTIONS: dict[str, tuple[int, Callable[..., Any], bool]] = {
    "abs": _unary(np.abs),
    "sqrt": _unary(np.sqrt),
    "exp": _unary(np.exp),
    "expm1": _unary(np.expm1),
    "log": _unary(np.log),
    "log1p": _unary(np.log1p),
    "log2": _unary(np.log2),
    "log10": _unary(np.log10),
    "sin": _unary(np.sin),
    "cos": _unary(np.cos),
    "tan": _unary(np.tan),
    "arcsin": _unary(np.arcsin),
    "arccos": _unary(np.arccos),
    "arctan": _unary(np.arctan),
    "sinh": _unary(np.sinh),
    "cosh": _unary(np.cosh),
    "tanh": _unary(np.tanh),
    "floor": _unary(np.floor),
    "ceil": _unary(np.ceil),
    "trunc": _unary(np.trunc),
    "sign": _unary(np.sign),
    "isnan": (1, np.isnan, True),
    "isinf": (1, np.isinf, True),
    "isfinite": (1, np.isfinite, True),
    "arctan2": (2, np.arctan2, False),
    "hypot": (2, np.hypot, False),
    "fmod": (2, np.fmod, False),
    "minimum": (2, np.minimum, False),
    "maximum": (2, np.maximum, False),
    "clip": (3, np.clip, False),
    "where": (3, np.where, False),
}

_ARITHMETIC: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: np.add,
    ast.Sub: np.subtract,
    ast.Mult: np.multiply,
    ast.Div: np.true_divide,
    ast.FloorDiv: np.floor_divide,
    ast.Mod: np.mod,
    ast.Pow: np.power,
}
_LOGICAL: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.BitAnd: np.logical_and,
    ast.BitOr: np.logical_or,
    ast.BitXor: np.logical_xor,
}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Lt: np.less,
    ast.LtE: np.less_equal,
    ast.Gt: np.greater,
    ast.GtE: np.greater_equal,
    ast.Eq: np.equal,
    ast.NotEq: np.not_equal,
}


@dataclass(frozen=True)
class _Compiled:
    """A node compiled: its closure and whether it yields a condition (bool) or a number."""

    run: Node
    condition: bool

    def number(self) -> Node:
        if not self.condition:
            return self.run
        run = self.run
        return lambda env: np.asarray(run(env), np.float64)

    def truth(self) -> Node:
        if self.condition:
            return self.run
        run = self.run
        return lambda env: np.not_equal(run(env), 0.0)


class _Compiler:
    """Compiles the parsed outputs of one expression; collects the bands they refer to."""

    def __init__(self) -> None:
        self.bands: set[int] = set()
        self.slots: dict[int, int] = {}  # band -> index in the environment, set after a pass

    def node(self, n: ast.AST, depth: int) -> _Compiled:
        if depth > MAX_DEPTH:
            raise ExpressionError(f"expression nests deeper than {MAX_DEPTH} levels")
        if isinstance(n, ast.Constant):
            return self._constant(n)
        if isinstance(n, ast.Name):
            return self._name(n)
        if isinstance(n, ast.BinOp):
            return self._binop(n, depth)
        if isinstance(n, ast.UnaryOp):
            return self._unaryop(n, depth)
        if isinstance(n, ast.Compare):
            return self._compare(n, depth)
        if isinstance(n, ast.Call):
            return self._call(n, depth)
        raise ExpressionError(f"expression may not use {_describe(n)}")

    def _constant(self, n: ast.Constant) -> _Compiled:
        value = n.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ExpressionError(f"expression constants are numbers, got {value!r:.40}")
        try:
            number = np.float64(float(value))
        except OverflowError:
            raise ExpressionError("expression holds a number too large for float64") from None
        return _Compiled(lambda env: number, False)

    def _name(self, n: ast.Name) -> _Compiled:
        m = _BAND.match(n.id)
        if m is None:
            raise ExpressionError(
                f"unknown name {n.id[:40]!r} in expression: bands are b1, b2, ... and functions "
                f"are {', '.join(sorted(FUNCTIONS))}"
            )
        band = int(m.group(1))
        self.bands.add(band)
        slots = self.slots
        return _Compiled(lambda env: env[slots[band]], False)

    def _binop(self, n: ast.BinOp, depth: int) -> _Compiled:
        left, right = self.node(n.left, depth + 1), self.node(n.right, depth + 1)
        kind = type(n.op)
        if kind in _ARITHMETIC:
            fn, a, b = _ARITHMETIC[kind], left.number(), right.number()
            return _Compiled(lambda env: fn(a(env), b(env)), False)
        if kind in _LOGICAL:
            fn, a, b = _LOGICAL[kind], left.truth(), right.truth()
            return _Compiled(lambda env: fn(a(env), b(env)), True)
        raise ExpressionError(f"expression may not use the operator {kind.__name__}")

    def _unaryop(self, n: ast.UnaryOp, depth: int) -> _Compiled:
        inner = self.node(n.operand, depth + 1)
        if isinstance(n.op, ast.USub):
            a = inner.number()
            return _Compiled(lambda env: np.negative(a(env)), False)
        if isinstance(n.op, ast.UAdd):
            return _Compiled(inner.number(), False)
        if isinstance(n.op, ast.Invert):
            t = inner.truth()
            return _Compiled(lambda env: np.logical_not(t(env)), True)
        raise ExpressionError(f"expression may not use the operator {type(n.op).__name__}")

    def _compare(self, n: ast.Compare, depth: int) -> _Compiled:
        operands = [self.node(v, depth + 1).number() for v in (n.left, *n.comparators)]
        parts: list[Node] = []
        for i, op in enumerate(n.ops):
            fn = _COMPARE.get(type(op))
            if fn is None:
                raise ExpressionError(f"expression may not use the comparison {type(op).__name__}")
            parts.append(_pair(fn, operands[i], operands[i + 1]))
        if len(parts) == 1:
            return _Compiled(parts[0], True)
        return _Compiled(lambda env: np.logical_and.reduce([p(env) for p in parts]), True)

    def _call(self, n: ast.Call, depth: int) -> _Compiled:
        if not isinstance(n.func, ast.Name) or n.func.id not in FUNCTIONS:
            what = n.func.id if isinstance(n.func, ast.Name) else _describe(n.func)
            raise ExpressionError(
                f"expression may not call {what[:40]!r}; functions are "
                f"{', '.join(sorted(FUNCTIONS))}"
            )
        name = n.func.id
        arity, fn, condition = FUNCTIONS[name]
        if n.keywords or len(n.args) != arity:
            raise ExpressionError(f"{name}() takes {arity} positional argument(s)")
        compiled = [self.node(a, depth + 1) for a in n.args]
        if name == "where":
            c, a, b = compiled[0].truth(), compiled[1].number(), compiled[2].number()
            return _Compiled(lambda env: np.where(c(env), a(env), b(env)), False)
        nums = [c.number() for c in compiled]
        return _Compiled(lambda env: fn(*(a(env) for a in nums)), condition)


def _pair(fn: Callable[[Any, Any], Any], a: Node, b: Node) -> Node:
    return lambda env: fn(a(env), b(env))


def _describe(n: ast.AST) -> str:
    names = {
        "Attribute": "attribute access",
        "Subscript": "subscripts",
        "Lambda": "lambda",
        "ListComp": "comprehensions",
        "GeneratorExp": "comprehensions",
        "SetComp": "comprehensions",
        "DictComp": "comprehensions",
        "BoolOp": "'and'/'or' (use & and |)",
        "IfExp": "'if' expressions (use where())",
        "NamedExpr": "assignments",
        "Starred": "starred arguments",
    }
    kind = type(n).__name__
    return names.get(kind, kind)


@dataclass(frozen=True)
class Expression:
    """A parsed, checked, compiled expression. ``bands``: the 1-based bands it refers to, in
    ascending order (what a read of it fetches); ``outputs``: the text of each output band."""

    text: str
    bands: tuple[int, ...]
    outputs: tuple[str, ...]
    _nodes: tuple[Node, ...] = field(repr=False, compare=False)

    @classmethod
    def parse(cls, text: str) -> Expression:
        """``text`` parsed and compiled; ``ExpressionError`` when it is not acceptable."""
        return parse_expression(text)

    @property
    def count(self) -> int:
        """Bands of the output."""
        return len(self.outputs)

    def check_bands(self, count: int) -> None:
        """``BandError`` naming the first band the expression refers to that a ``count``-band
        source does not have."""
        for b in self.bands:
            if b > count:
                raise BandError(
                    f"expression refers to band b{b}; this source has bands b1..b{count}"
                )

    def output_dtype(self, source: np.dtype[Any]) -> np.dtype[Any]:
        """float64 for float64 sources, else float32."""
        return np.dtype(np.float64 if source == np.float64 else np.float32)

    def evaluate(self, data: Array, dtype: Any = None) -> Array:
        """The outputs, shaped (count, height, width), of ``data`` shaped (len(bands), height,
        width) holding the referenced bands in ``bands`` order; ``dtype`` defaults to
        ``output_dtype(data.dtype)``. Runs strip by strip; CPU work, call it in a thread."""
        if data.ndim != 3 or data.shape[0] != len(self.bands):
            raise ValueError(f"expected {len(self.bands)} bands, got an array of {data.shape}")
        out_dtype = self.output_dtype(data.dtype) if dtype is None else np.dtype(dtype)
        _, height, width = data.shape
        out = np.empty((self.count, height, width), out_dtype)
        rows = max(1, STRIP_PIXELS // max(1, width))
        with np.errstate(all="ignore"):
            for r0 in range(0, height, rows):
                r1 = min(height, r0 + rows)
                env = [band.astype(np.float64) for band in data[:, r0:r1]]
                for k, run in enumerate(self._nodes):
                    strip = out[k, r0:r1]
                    strip[...] = run(env)  # broadcasts a constant output
                    np.nan_to_num(strip, copy=False)
        return out

    def working_bytes(self, width: int, height: int) -> int:
        """Bytes evaluation holds besides its input and output: float64 strips of the bands
        and, at most, of each node's result."""
        pixels = min(height * width, max(width, STRIP_PIXELS))
        return 8 * pixels * (len(self.bands) + MAX_DEPTH // 8 + 2)


def _check_size(tree: ast.Expression) -> int:
    """Count the expression nodes of ``tree`` (operators and contexts are not counted)."""
    nodes = 0
    for n in ast.walk(tree):
        if isinstance(n, ast.expr):
            nodes += 1
            if nodes > MAX_NODES:
                raise ExpressionError(f"expression has more than {MAX_NODES} terms")
    return nodes


def _parse_block(block: str) -> ast.Expression:
    try:
        return ast.parse(block, mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"expression {block[:60]!r} does not parse: {exc.msg}") from None
    except (ValueError, RecursionError, MemoryError):  # null bytes; the parser's own limits
        raise ExpressionError(f"expression {block[:60]!r} does not parse") from None


@lru_cache(maxsize=256)
def parse_expression(text: str) -> Expression:
    """``text`` (outputs separated by ``;``) parsed and compiled into an ``Expression``."""
    if not isinstance(text, str):
        raise ExpressionError("expression must be text")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(f"expression is longer than {MAX_EXPRESSION_CHARS} characters")
    blocks = [b.strip() for b in text.split(";")]
    while blocks and not blocks[-1]:
        blocks.pop()  # a trailing ';' is not an output
    if not blocks or any(not b for b in blocks):
        raise ExpressionError("expression has an empty output (between ';' separators)")
    if len(blocks) > MAX_OUTPUTS:
        raise ExpressionError(f"expression has more than {MAX_OUTPUTS} outputs")
    compiler = _Compiler()
    nodes, total = [], 0
    for block in blocks:
        tree = _parse_block(block)
        total += _check_size(tree)
        if total > MAX_NODES:
            raise ExpressionError(f"expression has more than {MAX_NODES} terms")
        nodes.append(compiler.node(tree.body, 0).number())
    if not compiler.bands:
        raise ExpressionError("expression refers to no band (b1, b2, ...)")
    bands = tuple(sorted(compiler.bands))
    compiler.slots.update({b: i for i, b in enumerate(bands)})
    return Expression(";".join(blocks), bands, tuple(blocks), tuple(nodes))
