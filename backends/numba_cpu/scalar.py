"""Scalar expressions of elementwise ops, as the code generator writes them.

`expression(op, args, attrs, dtype)` returns Python source computing one element from the
source of its operands; helper functions it names live in `scalar_lib` (inlined by numba).
float32 transcendentals take mathlib's vectorisable forms, or with `vector=False` libm's (one
call per element, for code that cannot vectorise anyway: compiling mathlib's exp or log costs
0.15-0.2 s in a fresh process, libm's nothing, measured).
Ops without an entry (or dtypes numba cannot compute in, like float16) make the kernel fall
back to the reference backend, so coverage grows one entry at a time without wrong answers.
"""
from __future__ import annotations

from typing import Any, Callable

from tfjit.ir.types import DType

Expr = Callable[[list[str], dict[str, Any], DType], str]

# Ops whose float32 form calls a fast vectorisable approximation (else libm's, `vector=False`).
_TRANSCENDENTAL = {"exp", "log", "log1p", "expm1", "tanh", "sigmoid"}
# libm's float32 functions called straight from the kernel (numba types math.exp of a float32
# as expf), not through an inlined helper: numba inlines a helper at each call site, which
# cost a softmax gradient's compile 10% (measured).
_LIBM = {"exp", "log", "log1p", "expm1", "tanh"}


def _call(fn: str) -> Expr:
    return lambda a, attrs, dt: f"{fn}({', '.join(a)})"


def _infix(op: str) -> Expr:
    return lambda a, attrs, dt: f"({a[0]} {op} {a[1]})"


def _math(name: str) -> Expr:
    """libm for float64; the fast float32 library (if present) for float32."""
    return lambda a, attrs, dt: f"{'_f32_' if dt.short == 'f32' else '_f64_'}{name}({a[0]})"


def _c(dt: DType, value: float) -> str:
    """A constant in the kernel's dtype (numba would widen float32 arithmetic with a bare 0.5)."""
    return f"_{dt.short}({value!r})"


def _const(value: float) -> Expr:
    return lambda a, attrs, dt: f"_{(attrs.get('dtype') or dt).short}({value!r})"


def _cast(a: list[str], attrs: dict[str, Any], dt: DType) -> str:
    target = attrs["dtype"]
    if target.short == "bool":
        return f"({a[0]} != 0)"
    return f"_{target.short}({a[0]})"


def _leaky(a: list[str], attrs: dict[str, Any], dt: DType) -> str:
    return f"_leaky_relu({a[0]}, _{dt.short}({float(attrs.get('alpha', 0.2))!r}))"


def _gelu(a: list[str], attrs: dict[str, Any], dt: DType) -> str:
    form = "_gelu_tanh" if attrs.get("approximate") else "_gelu_erf"
    return f"{form}_{dt.short}({a[0]})"


EXPRESSIONS: dict[str, Expr] = {
    "add": _infix("+"), "subtract": _infix("-"), "multiply": _infix("*"), "divide": _infix("/"),
    "pow": _call("_pow"), "maximum": _call("_maximum"), "minimum": _call("_minimum"),
    "squared_difference": _call("_squared_difference"),
    "floordiv": _call("_floordiv_float"), "mod": _call("_mod_float"),
    "equal": _infix("=="), "not_equal": _infix("!="), "less": _infix("<"), "less_equal": _infix("<="),
    "greater": _infix(">"), "greater_equal": _infix(">="),
    "logical_and": _infix("&"), "logical_or": _infix("|"), "logical_xor": _infix("^"),
    "logical_not": lambda a, attrs, dt: f"(not {a[0]})",
    "select": lambda a, attrs, dt: f"({a[1]} if {a[0]} else {a[2]})",
    "neg": lambda a, attrs, dt: f"(-{a[0]})", "abs": _call("abs"),
    "sign": lambda a, attrs, dt: f"({_c(dt, 1)} if {a[0]} > 0 else ({_c(dt, -1)} if {a[0]} < 0 else {_c(dt, 0)}))",
    "square": lambda a, attrs, dt: f"({a[0]} * {a[0]})", "sqrt": _call("np.sqrt"),
    "rsqrt": lambda a, attrs, dt: f"(_{dt.short}(1.0) / np.sqrt({a[0]}))",
    "reciprocal": lambda a, attrs, dt: f"(_{dt.short}(1.0) / {a[0]})",
    "exp": _math("exp"), "log": _math("log"), "log1p": _math("log1p"), "expm1": _math("expm1"),
    "tanh": _math("tanh"), "sigmoid": _math("sigmoid"), "sin": _call("np.sin"), "cos": _call("np.cos"),
    "relu": lambda a, attrs, dt: f"({a[0]} if not ({a[0]} < 0) else {_c(dt, 0)})",
    "relu6": lambda a, attrs, dt: f"_minimum(({a[0]} if not ({a[0]} < 0) else {_c(dt, 0)}), {_c(dt, 6)})",
    "elu": lambda a, attrs, dt: f"(np.expm1({a[0]}) if {a[0]} < 0 else {a[0]})",
    "selu": lambda a, attrs, dt: (f"({_c(dt, 1.0507009873554805)} * ({_c(dt, 1.6732632423543772)} * "
                                  f"np.expm1({a[0]}) if {a[0]} < 0 else {a[0]}))"),
    "softplus": _call("_softplus"),
    "softsign": lambda a, attrs, dt: f"({a[0]} / ({_c(dt, 1)} + abs({a[0]})))",
    "leaky_relu": _leaky, "gelu": _gelu,
    "floor": _call("np.floor"), "ceil": _call("np.ceil"), "round": _call("np.rint"),
    "is_nan": lambda a, attrs, dt: f"({a[0]} != {a[0]})", "is_finite": _call("np.isfinite"),
    "is_inf": _call("np.isinf"), "cast": _cast,
    "zeros_like": _const(0), "ones_like": _const(1),
    "identity": lambda a, attrs, dt: a[0], "stop_gradient": lambda a, attrs, dt: a[0],
}
# Integer forms differ from the float ones (division by zero raises in TF): float-only here.
FLOAT_ONLY = {"floordiv", "mod", "divide", "exp", "log", "log1p", "expm1", "tanh", "sigmoid", "sqrt", "rsqrt",
              "reciprocal", "sin", "cos", "elu", "selu", "softplus", "softsign", "leaky_relu", "gelu", "floor",
              "ceil", "round", "is_nan", "is_finite", "is_inf", "pow"}
# numba computes in these; anything else (float16) falls back to the reference backend.
SUPPORTED_DTYPES = {"f32", "f64", "i32", "i64", "bool", "i8", "u8"}


def expression(op: str, args: list[str], attrs: dict[str, Any], dtype: DType,
               vector: bool = True) -> str | None:
    """Source computing one element of `op` over dtype `dtype` operands, or None (no codegen);
    `vector=False`: float32 transcendentals call libm (see the module's docstring)."""
    if not vector and op in _TRANSCENDENTAL and dtype.short == "f32":
        return f"math.{op}(_f32({args[0]}))" if op in _LIBM else f"_f32_{op}_libm({args[0]})"
    rule = EXPRESSIONS.get(op)
    if rule is None or dtype.short not in SUPPORTED_DTYPES:
        return None
    if op in FLOAT_ONLY and not dtype.is_floating:
        return None
    if op == "cast" and attrs["dtype"].short not in SUPPORTED_DTYPES:
        return None
    return rule(args, attrs, dtype)
