"""From raw records to what people read: per-cell statistics, ratios, lower bounds, the
Markdown tables, the JSON file with every raw figure, and the PNG chart of the ratios.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .systems import SYSTEMS, TFJIT_SYSTEMS

Cell = dict[str, Any]
# A cell shows its worst status: one wrong round makes the whole cell wrong.
SEVERITY = ["wrong", "error", "unsupported", "absent", "n/a", "ok"]
QUICK_NOTE = (" (one process per system: only each system's first workload ran in a "
              "fresh process)")


def stats(samples: list[float]) -> dict[str, float]:
    q10, q25, q50, q75, q90 = np.percentile(samples, [10, 25, 50, 75, 90])
    return {"median_ms": float(q50), "min_ms": float(min(samples)), "p10_ms": float(q10),
            "p90_ms": float(q90), "spread_pct": float((q75 - q25) / q50 * 100),
            "n": len(samples)}


def first_calls(recs: list[dict]) -> dict[str, float | None]:
    """Time to first result: round 1 had cold caches, later rounds warm ones. (With one
    process per system, as in quick mode, only the first workload's process is fresh.)"""
    cold = [r["first_call_s"] for r in recs if "first_call_s" in r and r["round"] == 1]
    warm = [r["first_call_s"] for r in recs if "first_call_s" in r and r["round"] > 1]
    return {"first_call_cold_s": cold[0] if cold else None,
            "first_call_warm_s": float(np.median(warm)) if warm else None}


def cell(recs: list[dict]) -> Cell:
    status = min((r["status"] for r in recs), key=SEVERITY.index)
    out: Cell = {"status": status, **first_calls(recs)}
    loads = [r["foreign_load"] for r in recs if "foreign_load" in r]
    if loads:
        out["foreign_load_max"] = max(loads)
    reasons = [r["reason"] for r in recs if r.get("reason") and r["status"] == status]
    if reasons:
        out["reason"] = reasons[0]
    errors = [r["errors"] for r in recs if "errors" in r]
    if errors:
        out["max_error"] = {k: max(e.get(k, 0.0) for e in errors) for k in errors[0]}
    samples = [s for r in recs if r["status"] == "ok" for s in r["samples_ms"]]
    if status == "ok" and samples:
        out.update(stats(samples))
        out["round_medians_ms"] = [float(np.median(r["samples_ms"])) for r in recs]
    return out


def bound(info: dict[str, Any], machine: dict[str, Any]) -> dict[str, Any]:
    """The workload's lower bound on this machine: bytes at full bandwidth, or FLOPs at
    peak matmul speed, whichever takes longer."""
    if "bandwidth_gbs" not in machine:
        return {}
    memory_ms = info["bytes"] / (machine["bandwidth_gbs"] * 1e9) * 1e3
    compute_ms = info["flops"] / (machine["peak_gflops"] * 1e9) * 1e3
    limit = "memory" if memory_ms >= compute_ms else "compute"
    return {"bound_ms": max(memory_ms, compute_ms), "limited_by": limit}


def add_ratios(row: dict[str, Cell], bound_ms: float | None) -> None:
    timed = {s: c["median_ms"] for s, c in row.items() if "median_ms" in c}
    if not timed:
        return
    best = min(timed.values())
    tfjit = [timed[s] for s in TFJIT_SYSTEMS if s in timed]
    for s, median in timed.items():
        row[s]["ratio_to_best"] = median / best
        row[s]["ratio_to_tfjit"] = median / min(tfjit) if tfjit else None
        row[s]["fraction_of_bound"] = bound_ms / median if bound_ms else None


def summarize(raw: dict[str, Any]) -> dict[str, dict[str, dict[str, Cell]]]:
    """summary[device][workload][system] -> statistics of that cell."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in raw["records"]:
        groups.setdefault((r["device"], r["workload"], r["system"]), []).append(r)
    summary: dict[str, dict[str, dict[str, Cell]]] = {}
    for (device, workload, system), recs in groups.items():
        summary.setdefault(device, {}).setdefault(workload, {})[system] = cell(recs)
    order = list(raw["meta"]["workloads"])
    for device, rows in summary.items():
        summary[device] = {w: rows[w] for w in order if w in rows}
        for workload, row in summary[device].items():
            add_ratios(row, bound(raw["workloads"][workload], raw["machine"]).get("bound_ms"))
    return summary


# --- Markdown -------------------------------------------------------------------------

def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


LOADED = 0.25   # a cell measured while others took more of the CPUs than this is marked


def steady_text(c: Cell) -> str:
    if c["status"] != "ok":
        return c["status"]
    text = f"{c['median_ms']:.3g} (×{c['ratio_to_best']:.2f})"
    text = f"**{text}**" if c["ratio_to_best"] == 1.0 else text
    return text + (" †" if c.get("foreign_load_max", 0.0) > LOADED else "")


def first_text(c: Cell) -> str:
    if c["status"] != "ok":
        return c["status"]
    fmt = lambda s: "–" if s is None else f"{s:.2f}"  # noqa: E731
    return f"{fmt(c['first_call_cold_s'])} / {fmt(c['first_call_warm_s'])}"


def bound_text(c: Cell) -> str:
    frac = c.get("fraction_of_bound")
    if c["status"] != "ok":
        return c["status"]
    return "–" if frac is None else f"{frac * 100:.2g}%"


def device_tables(rows: dict[str, dict[str, Cell]], raw: dict[str, Any],
                  systems: list[str]) -> list[str]:
    header = ["workload"] + systems
    pick = lambda fn: [[w] + [fn(row.get(s, {"status": "–"})) for s in systems]  # noqa: E731
                       for w, row in rows.items()]
    limits = [bound(raw["workloads"][w], raw["machine"]) for w in rows]
    shares = [[row[0], f"{b['bound_ms']:.3g} ({b['limited_by']})" if b else "–", *row[1:]]
              for row, b in zip(pick(bound_text), limits)]
    return ["Steady state: median ms per call (× the fastest)", "",
            table(header, pick(steady_text)), "",
            "First call (set-up + trace + compile + run) in a fresh process, seconds: "
            "cold cache / warm cache" + QUICK_NOTE * raw["meta"]["one_process_per_system"],
            "", table(header, pick(first_text)), "",
            "Lower bound, ms (the larger of bytes at full bandwidth and FLOPs at matmul "
            "peak), and the share of it each system reaches (bound / median)", "",
            table(["workload", "bound"] + systems, shares), ""]


def reasons(summary: dict[str, dict[str, dict[str, Cell]]]) -> list[str]:
    seen, lines = set(), []
    for device, rows in summary.items():
        for workload, row in rows.items():
            for system, c in row.items():
                key = (system, c.get("reason"))
                if c["status"] not in ("ok", "n/a") and key not in seen:
                    seen.add(key)
                    lines.append(f"- {system} ({device}, first at {workload}): "
                                 f"{c['status']}: {c.get('reason', '')}")
    return lines


def load_note(records: list[dict]) -> list[str]:
    """How much CPU other processes took while we measured: the caveat on every figure."""
    loads = [r["foreign_load"] for r in records if "foreign_load" in r]
    if not loads:
        return []
    text = (f"Other processes' CPU use while measuring: median {np.median(loads):.0%}, "
            f"max {max(loads):.0%} of the machine")
    if max(loads) > LOADED:
        text += (f"; † marks figures taken while others took over {LOADED:.0%} "
                 "(slower than this machine can do)")
    return [text, ""]


def markdown(raw: dict[str, Any], summary: dict[str, Any]) -> str:
    meta, m = raw["meta"], raw["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    lines = [f"Date: {meta['date']}  ", f"Machine: {meta['machine']['cpu']}, "
             f"{meta['machine']['cores']} cores, {meta['machine']['memory_gib']} GiB; "
             f"measured {m.get('bandwidth_gbs', 0):.1f} GB/s, "
             f"{m.get('peak_gflops', 0):.0f} GFLOP/s float32 matmul (best of the run's "
             "start and end)  ",
             f"Command: `{meta['command']}`  ", f"Versions: {versions}", ""]
    lines += load_note(raw["records"])
    systems = [s for s in SYSTEMS if s in meta["systems"]]
    for device, rows in summary.items():
        lines += [f"#### {device.upper()}", ""] + device_tables(rows, raw, systems)
    why = reasons(summary)
    return "\n".join(lines + (["Not measured:", ""] + why if why else []) + [""])


# --- chart and files -------------------------------------------------------------------

def chart(summary: dict[str, Any], device: str, path: Path) -> bool:
    """Grouped bars of each system's time relative to the fastest; False without
    matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = summary[device]
    systems = [s for s in SYSTEMS if any("ratio_to_best" in r.get(s, {}) for r in rows.values())]
    fig, ax = plt.subplots(figsize=(max(8, 1.4 * len(rows)), 5))
    width = 0.8 / max(len(systems), 1)
    for i, s in enumerate(systems):
        xs = [j + i * width for j, r in enumerate(rows.values()) if "ratio_to_best" in r.get(s, {})]
        ys = [r[s]["ratio_to_best"] for r in rows.values() if "ratio_to_best" in r.get(s, {})]
        ax.bar(xs, ys, width, label=s)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(rows))], list(rows), rotation=20)
    ax.set_yscale("log")
    ax.set_ylabel("time / fastest (log; lower is better)")
    ax.set_title(f"tfjit bench, {device}: median time relative to the fastest system")
    ax.legend(fontsize="small", ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write(run_dir: Path, raw: dict[str, Any]) -> dict[str, Path]:
    """Write results.json, results.md and one chart per device; returns their paths."""
    summary = summarize(raw)
    paths = {"json": run_dir / "results.json", "markdown": run_dir / "results.md"}
    paths["json"].write_text(json.dumps({**raw, "summary": summary}, indent=1))
    paths["markdown"].write_text(markdown(raw, summary))
    for device in summary:
        png = run_dir / f"ratios-{device}.png"
        if chart(summary, device, png):
            paths[f"chart-{device}"] = png
    return paths
