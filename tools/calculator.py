"""The ``calculator`` tool: arithmetic from a string, without ``eval``.

The expression is parsed with :mod:`ast` and walked node by node; only numbers, the arithmetic
operators, parentheses, a handful of math functions and two constants are understood. Every
input that could make the walk expensive is bounded before the work is done: the text length,
the number of syntax nodes and their nesting, the size of exponents and of every intermediate
result.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable

from langchain_core.tools import BaseTool, StructuredTool, ToolException
from pydantic import BaseModel, Field

from state.tool_risk import ToolRisk

__all__ = [
    "CalculatorError",
    "MAX_EXPRESSION_CHARS",
    "evaluate",
    "format_number",
    "make_calculator_tool",
]

Number = int | float

MAX_EXPRESSION_CHARS = 500
"""Longest expression accepted, in characters."""
_MAX_NODES = 200
_MAX_DEPTH = 40
_MAX_EXPONENT = 1000
_MAX_MAGNITUDE = 1e300
# Integers stay exact but are capped by digits too: a 10_000-digit int is cheap to hold yet
# expensive to print and useless to an agent.
_MAX_INT_DIGITS = 300
_MAX_ROUND_DIGITS = 15


class CalculatorError(ValueError):
    """An expression the calculator refuses or cannot evaluate; the message says why."""


_BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_UNARY: dict[type[ast.unaryop], Callable[[Number], Number]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}


def _sqrt(x: Number) -> Number:
    return math.sqrt(x)


def _log(x: Number, base: Number | None = None) -> Number:
    return math.log(x) if base is None else math.log(x, base)


def _round(x: Number, ndigits: Number | None = None) -> Number:
    if ndigits is None:
        return round(x)
    if not isinstance(ndigits, int) or abs(ndigits) > _MAX_ROUND_DIGITS:
        raise CalculatorError(
            f"round() takes a whole number of digits between -{_MAX_ROUND_DIGITS} "
            f"and {_MAX_ROUND_DIGITS}."
        )
    return round(x, ndigits)


# name -> (function, fewest args, most args; None = any number)
_FUNCTIONS: dict[str, tuple[Callable[..., Number], int, int | None]] = {
    "sqrt": (_sqrt, 1, 1),
    "log": (_log, 1, 2),
    "sin": (math.sin, 1, 1),
    "cos": (math.cos, 1, 1),
    "abs": (abs, 1, 1),
    "round": (_round, 1, 2),
    "min": (min, 1, None),
    "max": (max, 1, None),
}

_OPERATOR_SYMBOLS = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
}


def _check_shape(tree: ast.AST) -> None:
    count = 0
    stack: list[tuple[ast.AST, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > _MAX_NODES:
            raise CalculatorError(
                f"Expression is too complex (more than {_MAX_NODES} parts); split it into steps."
            )
        if depth > _MAX_DEPTH:
            raise CalculatorError(
                f"Expression is nested too deeply (more than {_MAX_DEPTH} levels)."
            )
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


def _checked(value: Number) -> Number:
    if isinstance(value, float):
        if math.isnan(value):
            raise CalculatorError("Result is not a number.")
        if math.isinf(value) or abs(value) > _MAX_MAGNITUDE:
            raise CalculatorError(f"Result is larger than {_MAX_MAGNITUDE:g} in magnitude.")
    elif abs(value) > _MAX_MAGNITUDE:
        raise CalculatorError(f"Result is larger than {_MAX_MAGNITUDE:g} in magnitude.")
    return value


def _power(base: Number, exponent: Number) -> Number:
    if abs(exponent) > _MAX_EXPONENT:
        raise CalculatorError(f"Exponent {format_number(exponent)} is larger than {_MAX_EXPONENT}.")
    # Estimate the size before computing so 999**999 is refused without being built.
    if base not in (0, 1, -1) and exponent > 0:
        if exponent * math.log10(abs(base)) > math.log10(_MAX_MAGNITUDE):
            raise CalculatorError(f"Result is larger than {_MAX_MAGNITUDE:g} in magnitude.")
    if base == 0 and exponent < 0:
        raise CalculatorError("Cannot raise zero to a negative power.")
    result = base**exponent
    if isinstance(result, complex):
        raise CalculatorError("Result is a complex number; only real results are supported.")
    return result


class _Evaluator:
    def visit(self, node: ast.AST) -> Number:
        if isinstance(node, ast.Expression):
            return self.visit(node.body)
        if isinstance(node, ast.Constant):
            value = node.value
            # bool is an int subclass; ``True + 1`` is not arithmetic an agent means to do.
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise CalculatorError(f"Unsupported value {value!r}; only numbers are allowed.")
            return _checked(value)
        if isinstance(node, ast.BinOp):
            return self._binary(node)
        if isinstance(node, ast.UnaryOp):
            unary = _UNARY.get(type(node.op))
            if unary is None:
                raise CalculatorError("Only unary + and - are supported.")
            return _checked(unary(self.visit(node.operand)))
        if isinstance(node, ast.Name):
            if node.id in _CONSTANTS:
                return _CONSTANTS[node.id]
            raise CalculatorError(
                f"Unknown name {node.id!r}. Known constants: {', '.join(sorted(_CONSTANTS))}."
            )
        if isinstance(node, ast.Call):
            return self._call(node)
        raise CalculatorError(
            f"Unsupported syntax ({type(node).__name__}). Use numbers, + - * / // % **, "
            f"parentheses and the functions {', '.join(sorted(_FUNCTIONS))}."
        )

    def _binary(self, node: ast.BinOp) -> Number:
        left = self.visit(node.left)
        right = self.visit(node.right)
        if isinstance(node.op, ast.Pow):
            return _checked(_power(left, right))
        binary = _BINARY.get(type(node.op))
        if binary is None:
            raise CalculatorError(
                "Unsupported operator; use " + " ".join(_OPERATOR_SYMBOLS.values()) + "."
            )
        if isinstance(node.op, ast.Div | ast.FloorDiv | ast.Mod) and right == 0:
            raise CalculatorError("Division by zero.")
        return _checked(binary(left, right))

    def _call(self, node: ast.Call) -> Number:
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
            name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
            raise CalculatorError(
                f"Unknown function {name!r}. Known functions: {', '.join(sorted(_FUNCTIONS))}."
            )
        if node.keywords or any(isinstance(arg, ast.Starred) for arg in node.args):
            raise CalculatorError(f"{node.func.id}() takes plain positional arguments only.")
        function, fewest, most = _FUNCTIONS[node.func.id]
        count = len(node.args)
        if count < fewest or (most is not None and count > most):
            if most is None:
                expected = f"{fewest} or more"
            elif fewest == most:
                expected = str(fewest)
            else:
                expected = f"{fewest} to {most}"
            raise CalculatorError(f"{node.func.id}() takes {expected} argument(s), got {count}.")
        args = [self.visit(arg) for arg in node.args]
        try:
            return _checked(function(*args))
        except CalculatorError:
            raise
        except (ValueError, ZeroDivisionError, OverflowError) as exc:
            raise CalculatorError(
                f"{node.func.id}() cannot take {', '.join(format_number(a) for a in args)}: {exc}."
            ) from None


def evaluate(expression: str) -> Number:
    """Evaluate an arithmetic expression safely.

    Args:
        expression: For example ``"(2 + 3) * sqrt(16) / 4"``.

    Returns:
        The result: an ``int`` when all operations stayed whole, else a ``float``.

    Raises:
        CalculatorError: The expression is too long or complex, uses something other than
            arithmetic, or its result is undefined or too large. The message says which.
    """
    text = expression.strip()
    if not text:
        raise CalculatorError("Expression is empty.")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise CalculatorError(
            f"Expression is {len(text)} characters long; the limit is {MAX_EXPRESSION_CHARS}."
        )
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise CalculatorError(f"Cannot parse expression: {exc.msg}.") from None
    except (ValueError, RecursionError, MemoryError):
        raise CalculatorError("Cannot parse expression.") from None
    _check_shape(tree)
    try:
        return _Evaluator().visit(tree)
    except (OverflowError, ZeroDivisionError):
        raise CalculatorError("Result is undefined or too large.") from None


def format_number(value: Number) -> str:
    """Render a result compactly: whole numbers without ``.0``, else 15 significant digits."""
    if isinstance(value, int):
        text = str(value)
        if len(text.lstrip("-")) > _MAX_INT_DIGITS:
            return format(float(value), ".15g")
        return text
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return format(value, ".15g")


class CalculatorInput(BaseModel):
    """Arguments of the ``calculator`` tool."""

    expression: str = Field(
        description=(
            "Arithmetic expression, e.g. '(1200 * 0.15) + sqrt(81)'. Supports + - * / // % **, "
            "parentheses, sqrt, log, sin, cos, abs, round, min, max and the constants pi, e."
        ),
    )


def _calculate(expression: str) -> str:
    try:
        return format_number(evaluate(expression))
    except CalculatorError as exc:
        # ToolException is turned into a tool message the model can read and correct.
        raise ToolException(f"Calculator error: {exc}") from None


def make_calculator_tool() -> BaseTool:
    """Return a new ``calculator`` tool (risk ``read``)."""
    return StructuredTool.from_function(
        func=_calculate,
        name="calculator",
        description=(
            "Evaluate an arithmetic expression exactly and return the number. Use it for sums, "
            "percentages, ratios, budgets and unit conversions instead of mental arithmetic."
        ),
        args_schema=CalculatorInput,
        metadata={"risk": ToolRisk.READ.value},
        handle_tool_error=True,
    )
