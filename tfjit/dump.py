"""`tfjit dump`: show what tfjit makes of a program, stage by stage.

    tfjit dump model.py --input x=f32[32,784]   # the script's graph, placeholder x fed [32,784]
    tfjit dump model.py:fn --input x=f32[32,784] --input y=i64[32]
    tfjit dump model.py --stage all --stats --explain-fusion --format dot -o model.dot

A TF1 script runs until its first `Session.run`, which is stopped; the whole default graph
built so far is dumped (placeholders keep their declared shapes unless --input gives one).
"""
from __future__ import annotations

import argparse
import os
import re
import runpy
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from .ir.dot import to_dot
from .ir.graph import Graph
from .ir.printer import print_graph
from .ir.types import as_dtype, make_shape

# Stage name -> the pass whose output it is ("traced" is the pipeline's input).
STAGES = {"traced": "input", "optimized": "dce", "placed": "place", "fused": "fuse", "planned": "plan_memory"}
ELEMENTWISE_KINDS = {"loop"}


class DumpError(Exception):
    """Bad command-line input: reported without a traceback, exit status 2."""


class _StopAtRun(Exception):
    """Raised in place of the script's first Session.run."""


@dataclass
class Stages:
    history: list[tuple[str, Graph]]
    explanations: list[str]


# -- getting the program ------------------------------------------------------------------------
def script_program(path: str, inputs: list[str], fetch: list[str]) -> Graph:
    """Run the script's graph construction up to its first Session.run, then the program of
    `fetch` (tensor or op names), by default of the whole default graph; `inputs`
    ('x=f32[32,784]') give placeholders concrete shapes."""
    from .compat import session as session_mod
    from .debug import program_for
    from .trace.graph import get_default_graph, reset_default_graph

    _check_file(path)
    original = session_mod.Session.run

    def stop(self: Any, fetches: Any, feed_dict: Any = None, **kwargs: Any) -> Any:
        raise _StopAtRun()

    reset_default_graph()
    session_mod.Session.run = stop  # type: ignore[method-assign]
    try:
        runpy.run_path(path, run_name="__main__")
    except _StopAtRun:
        pass
    finally:
        session_mod.Session.run = original  # type: ignore[method-assign]
    graph = get_default_graph()
    if fetch:
        return program_for([_by_name(graph, name) for name in fetch], _feeds(graph, inputs), graph)
    consumed = {v for n in graph.nodes for v in n.inputs}
    controlled = {c for n in graph.nodes for c in n.control_inputs}
    sinks = [n for n in graph.nodes if n not in controlled and not set(n.outputs) & consumed]
    if not sinks:
        raise DumpError(f"{path} builds no graph before its first Session.run: nothing to dump")
    fetches = [graph.operation(n).outputs[0] if n.types else graph.operation(n) for n in sinks]
    return program_for(fetches, _feeds(graph, inputs), graph)


def _by_name(graph: Any, name: str) -> Any:
    try:
        return graph.get_tensor_by_name(name) if ":" in name else graph.get_operation_by_name(name)
    except KeyError:
        raise DumpError(f"--fetch {name!r}: the graph has no tensor or operation of that name") from None


def _feeds(graph: Any, inputs: list[str]) -> dict[Any, np.ndarray]:
    feeds = {}
    for spec in inputs:
        name, array = parse_input(spec)
        try:
            tensor = graph.get_tensor_by_name(f"{name}:0")
        except KeyError:
            raise DumpError(f"--input {spec!r}: the graph has no tensor named {name}:0") from None
        feeds[tensor] = array
    return feeds


def function_program(path: str, name: str, inputs: list[str]) -> Graph:
    """Trace `name` from `path` (decorated with @tfjit.function or not) for the given input specs."""
    from .trace.function import Function

    _check_file(path)
    module = runpy.run_path(path, run_name="__tfjit_dump__")
    if name not in module:
        found = sorted(k for k, v in module.items() if callable(v) and not k.startswith("_"))
        raise DumpError(f"{path} has no function `{name}`; it defines {', '.join(found) or 'no functions'}")
    fn = module[name]
    fn = fn if isinstance(fn, Function) else Function(fn)
    arrays = dict(parse_input(spec) for spec in inputs)
    params = list(fn._signature.parameters)
    unknown = sorted(set(arrays) - set(params))
    if unknown:
        raise DumpError(f"`{name}` has no parameter {', '.join(unknown)}; its parameters are {', '.join(params)}")
    try:
        return fn.graph_for(**arrays)
    except TypeError as e:
        raise DumpError(f"cannot call `{name}` with the given --input specs ({e}); its parameters are "
                        f"{', '.join(params)}") from None


def parse_input(spec: str) -> tuple[str, np.ndarray]:
    """'x=f32[32,784]' -> ('x', zeros of that dtype and shape)."""
    m = re.fullmatch(r"([A-Za-z_]\w*)=([a-z0-9]+)\[([0-9, ]*)\]", spec.strip())
    if not m:
        raise DumpError(f"bad --input {spec!r}: expected NAME=DTYPE[DIMS], e.g. x=f32[32,784]")
    name, dtype, dims = m.groups()
    try:
        dt = as_dtype(dtype)
    except TypeError as e:
        raise DumpError(f"bad --input {spec!r}: {e}") from None
    shape = make_shape([int(d) for d in dims.split(",") if d.strip()])
    return name, np.zeros(shape, dt.np_dtype)


def _check_file(path: str) -> None:
    if not os.path.isfile(path):
        raise DumpError(f"no such file: {path}")


# -- running the stages -------------------------------------------------------------------------
def run_stages(program: Graph) -> Stages:
    from . import config
    from .passes.fuse import explain_fusion

    manager = config.pass_manager(allow_soft_placement=True)
    manager.run(program)
    placed = dict(manager.history).get("place")
    return Stages(manager.history, explain_fusion(placed) if placed is not None else [])


def stage_graph(stages: Stages, stage: str) -> Graph | None:
    return dict(stages.history).get(STAGES[stage])


def stats(stages: Stages) -> str:
    """Nodes and kernels per stage, intermediate bytes, planned peak, fusion checks."""
    from .passes.plan_memory import plan

    rows = ["stage       nodes  kernels  intermediate bytes  planned bytes"]
    for stage in STAGES:
        g = stage_graph(stages, stage)
        if g is None:
            continue
        memory = plan(g)
        rows.append(f"{stage:<11} {len(g.nodes):>5}  {_kernels(g):>7}  {memory.intermediate_bytes:>18}  "
                    f"{memory.planned_bytes:>13}")
    final = stage_graph(stages, "planned") or stages.history[-1][1]
    memory = plan(final)
    unfused = plan(stage_graph(stages, "placed") or stages.history[0][1]).intermediate_bytes
    ratio = memory.planned_bytes / unfused if unfused else 0.0
    own = memory.planned_bytes / memory.intermediate_bytes if memory.intermediate_bytes else 0.0
    rows.append(f"planned peak of intermediates: {memory.planned_bytes} bytes = {ratio:.0%} of the {unfused} "
                f"bytes the unfused program materialises ({own:.0%} of the fused program's own "
                f"intermediates)")
    rows.append(f"adjacent elementwise kernels left unfused: {len(unfused_elementwise_pairs(final))}")
    for var, count in sorted(update_kernels_per_variable(final).items()):
        rows.append(f"kernels writing variable {var}: {count}")
    return "\n".join(rows)


def _kernels(g: Graph) -> int:
    """Nodes that run code: everything but parameters, constants, variable reads and no-ops."""
    return sum(n.op not in ("constant", "variable", "no_op") for n in g.nodes)


def _is_elementwise_kernel(node: Any) -> bool:
    from .ops.registry import Fusion, get_op

    if node.op == "fused":
        return node.attr("kind") in ELEMENTWISE_KINDS
    return get_op(node.op).fusion in (Fusion.ELEMENTWISE, Fusion.BROADCAST) and get_op(node.op).stateful is False


def unfused_elementwise_pairs(g: Graph) -> list[tuple[str, str]]:
    """Producer/consumer pairs of elementwise kernels over the same elements that stayed apart."""
    pairs = []
    for n in g.nodes:
        if not _is_elementwise_kernel(n):
            continue
        for v in n.inputs:
            p = v.node
            same_space = p.types and n.types and p.types[0].num_elements == n.types[0].num_elements
            if _is_elementwise_kernel(p) and same_space and (p.types[0].num_elements or 0) > 1:
                pairs.append((p.name or p.op, n.name or n.op))
    return pairs


def update_kernels_per_variable(g: Graph) -> dict[str, int]:
    counts: dict[str, int] = {}
    for n in g.nodes:
        body = n.attr("body")
        members = body.nodes if isinstance(body, Graph) else [n]
        for var in {m.attr("var") for m in members if m.op in ("assign", "assign_add", "assign_sub")}:
            counts[var] = counts.get(var, 0) + 1
    return counts


# -- output ---------------------------------------------------------------------------------------
def render(graph: Graph, fmt: str) -> str | bytes:
    if fmt == "text":
        return print_graph(graph)
    dot = to_dot(graph)
    if fmt == "dot":
        return dot
    if shutil.which("dot") is None:
        raise DumpError(f"--format {fmt} needs the Graphviz `dot` program; install graphviz or use --format dot")
    return subprocess.run(["dot", f"-T{fmt}"], input=dot.encode(), capture_output=True, check=True).stdout


def main(args: argparse.Namespace) -> int:
    try:
        return _dump(args)
    except DumpError as e:
        print(f"tfjit dump: error: {e}", file=sys.stderr)
        return 2


def _dump(args: argparse.Namespace) -> int:
    target, _, fn = args.target.partition(":")
    if fn and args.fetch:
        raise DumpError("--fetch applies to a script target; a function's results are what it returns")
    program = function_program(target, fn, args.input) if fn else script_program(target, args.input, args.fetch)
    stages = run_stages(program)
    chosen = list(STAGES) if args.stage == "all" else [args.stage]
    pieces: list[str | bytes] = []
    if args.after:
        graphs = dict(stages.history)
        if args.after not in graphs:
            raise DumpError(f"no pass named {args.after!r} ran; passes: {', '.join(n for n, _ in stages.history[1:])}")
        pieces.append(render(graphs[args.after], args.format))
    elif args.stage == "kernels":
        from .backends.numba_cpu.executable import compile_graph, kernel_sources

        pieces.append(kernel_sources(compile_graph(stage_graph(stages, "planned"))))
    else:
        for stage in chosen:
            g = stage_graph(stages, stage)
            if g is None:
                continue
            text = render(g, args.format)
            pieces.append(f"// stage: {stage}\n{text}" if isinstance(text, str) and len(chosen) > 1 else text)
    if args.stats:
        pieces.append(stats(stages))
    if args.explain_fusion:
        pieces.append("\n".join(stages.explanations) or "no fusion candidates")
    _write(pieces, args.output)
    return 0


def _write(pieces: list[str | bytes], output: str | None) -> None:
    if any(isinstance(p, bytes) for p in pieces):
        if not output:
            raise DumpError("binary formats (svg, png) need -o FILE")
        with open(output, "wb") as f:
            for p in pieces:
                f.write(p if isinstance(p, bytes) else p.encode())
        return
    text = "\n\n".join(p for p in pieces if isinstance(p, str)) + "\n"
    if output:
        with open(output, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="model.py (a TF1 script) or model.py:fn (a function to trace)")
    parser.add_argument("--input", action="append", default=[], metavar="NAME=DTYPE[DIMS]",
                        help="a placeholder's or traced function argument's type, e.g. x=f32[32,784]")
    parser.add_argument("--fetch", action="append", default=[], metavar="NAME",
                        help="dump the program computing this tensor ('loss:0') or running this op ('train')")
    parser.add_argument("--stage", default="fused", choices=[*STAGES, "kernels", "all"])
    parser.add_argument("--after", metavar="PASS", help="the IR after this pass")
    parser.add_argument("--format", default="text", choices=["text", "dot", "svg", "png"])
    parser.add_argument("--stats", action="store_true", help="nodes, kernels and memory per stage")
    parser.add_argument("--explain-fusion", action="store_true", help="why neighbours were or were not fused")
    parser.add_argument("-o", "--output", help="write here instead of stdout")
