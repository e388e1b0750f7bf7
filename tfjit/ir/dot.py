"""Graphviz DOT form of a graph: one box per node (op, name, type, line); fused kernels as clusters."""
from __future__ import annotations

import json

from .graph import Graph, Node, Value


def to_dot(graph: Graph) -> str:
    lines = [f"digraph {json.dumps(graph.name)} {{", "  node [shape=box, fontname=monospace, fontsize=10];"]
    ids: dict[Value, str] = {}
    for i, p in enumerate(graph.params):
        ids[p] = f"p{i}"
        lines.append(f'  p{i} [label={json.dumps(f"param {p.node.name or i}: {p.type}")}, shape=ellipse];')
    _nodes(graph.nodes, ids, lines, prefix="n", indent="  ")
    for i, r in enumerate(graph.results):
        lines.append(f'  r{i} [label="result {i}", shape=ellipse];')
        lines.append(f"  {ids[r]} -> r{i};")
    lines.append("}")
    return "\n".join(lines)


def _nodes(nodes: list[Node], ids: dict[Value, str], lines: list[str], prefix: str, indent: str) -> None:
    for i, node in enumerate(nodes):
        nid = f"{prefix}{i}"
        for v in node.outputs:
            ids[v] = nid
        body = node.attr("body")
        label = f"{node.op}{' ' + node.attr('kind') if node.op == 'fused' else ''}\\n{node.name or ''}\\n" + \
            ", ".join(str(t) for t in node.types) + (f"\\n{node.loc.short}" if node.loc else "")
        lines.append(f'{indent}{nid} [label="{label}"{", style=bold" if isinstance(body, Graph) else ""}];')
        for v in node.inputs:
            if v in ids:
                lines.append(f"{indent}{ids[v]} -> {nid};")
        for c in node.control_inputs:
            source = next((ids[v] for v in c.outputs if v in ids), None)
            if source is not None:
                lines.append(f"{indent}{source} -> {nid} [style=dashed];")
        if isinstance(body, Graph):
            inner: dict[Value, str] = {}
            lines.append(f"{indent}subgraph cluster_{nid} {{")
            lines.append(f'{indent}  label={json.dumps(body.name)}; style=rounded;')
            for j, p in enumerate(body.params):
                inner[p] = f"{nid}_p{j}"
                lines.append(f'{indent}  {nid}_p{j} [label="in {j}", shape=ellipse];')
            _nodes(body.nodes, inner, lines, prefix=f"{nid}_", indent=indent + "  ")
            lines.append(f"{indent}}}")
