"""Smoke test of the benchmark harness (`tfjit bench --quick`) on tiny sizes.

Runs NumPy, the hand-written numba kernels and both tfjit front doors through the
whole pipeline (inputs, oracle, worker processes, checks, tables, JSON). Nothing is
judged on speed; a wrong answer or an unexpected failure of any adapter fails it.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tfjit.bench import cli

SYSTEMS = ["numpy", "numba", "tfjit_session", "tfjit_function"]
ELEMENTWISE = ["gelu_chain", "softmax_rows", "layernorm"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path, dict]:
    out = tmp_path_factory.mktemp("bench")
    code = cli.main(["--quick", "--size", "tiny", "--repeat", "2", "--device", "cpu",
                     "--systems", ",".join(SYSTEMS), "--out", str(out)])
    (run_dir,) = out.iterdir()
    return code, run_dir, json.loads((run_dir / "results.json").read_text())


def test_every_installed_adapter_passes_its_check(run: tuple[int, Path, dict]) -> None:
    code, _, data = run
    bad = [f"{r['system']}/{r['workload']}: {r['status']}: {r.get('reason')}"
           for r in data["records"] if r["status"] in ("wrong", "error")]
    assert not bad, "\n".join(bad)
    assert code == 0


def test_reference_systems_are_timed(run: tuple[int, Path, dict]) -> None:
    rows = run[2]["summary"]["cpu"]
    for workload, row in rows.items():
        assert row["numpy"]["status"] == "ok", workload
        assert row["numpy"]["n"] == 2 and row["numpy"]["median_ms"] > 0
        expected = "ok" if workload in ELEMENTWISE else "n/a"
        assert row["numba"]["status"] == expected, (workload, row["numba"])
        for system in ("tfjit_session", "tfjit_function"):
            assert row[system]["status"] in ("ok", "unsupported", "absent"), row[system]


def test_json_has_every_part(run: tuple[int, Path, dict]) -> None:
    _, run_dir, data = run
    assert set(data) >= {"meta", "machine", "workloads", "records", "summary"}
    assert data["machine"]["bandwidth_gbs"] > 0 and data["machine"]["peak_gflops"] > 0
    assert data["meta"]["preset"] == "tiny" and data["meta"]["repeat"] == 2
    assert set(data["workloads"]) == set(cli.WORKLOADS)
    for info in data["workloads"].values():
        assert info["bytes"] > 0 and info["flops"] >= 0
    ok = [r for r in data["records"] if r["status"] == "ok"]
    assert all(len(r["samples_ms"]) == 2 and r["first_call_s"] > 0 for r in ok)
    assert all(max(r["errors"].values()) <= 2e-2 for r in ok)
    text = (run_dir / "results.md").read_text()
    assert "| workload |" in text and "gelu_chain" in text


def test_readme_block_is_replaced(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("intro\n" + "\n".join(cli.MARKERS) + "\noutro\n")
    cli.update_readme("TABLE", readme)
    cli.update_readme("NEWER", readme)
    body = readme.read_text()
    assert "NEWER" in body and "TABLE" not in body and body.startswith("intro")
