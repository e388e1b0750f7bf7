"""`tfjit bench`: compare tfjit with NumPy, numba, JAX, TensorFlow and PyTorch.

Exit status 1 when any installed system gives a wrong answer or fails unexpectedly,
so `tfjit bench --quick` works as a CI smoke test (nothing is judged on speed).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from . import report, runner
from .systems import SYSTEMS
from .workloads import PRESETS, WORKLOADS

README = Path(__file__).resolve().parent / "README.md"
MARKERS = ("<!-- bench-results:start -->", "<!-- bench-results:end -->")


def names(text: str, known: dict) -> list[str]:
    chosen = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in known]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {sorted(known)}")
    return chosen


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tfjit bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="small sizes, 5 calls, one round, one process per system (~1 min)")
    p.add_argument("--size", choices=PRESETS, help="size preset (default: full; quick "
                   "with --quick; tiny is for tests)")
    p.add_argument("--workloads", type=lambda t: names(t, WORKLOADS), default=list(WORKLOADS),
                   help="comma-separated subset of: " + ", ".join(WORKLOADS))
    p.add_argument("--systems", type=lambda t: names(t, SYSTEMS), default=list(SYSTEMS),
                   help="comma-separated subset of: " + ", ".join(SYSTEMS))
    p.add_argument("--device", choices=["cpu", "gpu"],
                   help="default: cpu, plus gpu when an NVIDIA GPU is present")
    p.add_argument("--repeat", type=int, help="timed calls per process (default 20; 5 quick)")
    p.add_argument("--rounds", type=int, help="rounds; round 1 is cold-cache (default 2; "
                   "1 quick)")
    p.add_argument("--warmup", type=int, help="untimed calls before timing (default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, help="seconds per process (default 900)")
    p.add_argument("--max-wait", type=float, help="seconds to wait before each process "
                   "while other processes keep over 25%% of the CPUs busy (default 20; 0 "
                   "quick)")
    p.add_argument("--out", type=Path, default=runner.BENCH_DIR / "results",
                   help="results folder (a time-stamped run folder is made inside)")
    p.add_argument("--update-readme", action="store_true",
                   help="write the results tables into bench/README.md")
    return p


def config(args: argparse.Namespace, argv: list[str]) -> runner.Config:
    quick = args.quick
    devices = [args.device] if args.device else ["cpu"] + (["gpu"] if runner.gpu_name() else [])
    return runner.Config(
        preset=args.size or ("quick" if quick else "full"), systems=args.systems,
        workloads=args.workloads, devices=devices,
        repeat=args.repeat or (5 if quick else 20),
        warmup=args.warmup if args.warmup is not None else (1 if quick else 3),
        rounds=args.rounds or (1 if quick else 2), seed=args.seed,
        one_process_per_system=quick, timeout_s=args.timeout or (300 if quick else 900),
        max_wait_s=args.max_wait if args.max_wait is not None else (0 if quick else 20),
        out=args.out, command=" ".join(["tfjit bench", *argv]))


def update_readme(text: str, path: Path = README) -> None:
    """Replace what lies between the result markers in bench/README.md."""
    start, end = MARKERS
    body = path.read_text()
    block = f"{start}\n{text}\n{end}"
    body, count = re.subn(re.escape(start) + ".*?" + re.escape(end), lambda _: block, body,
                          flags=re.S)
    path.write_text(body if count else body + "\n" + block + "\n")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    run_dir, raw = runner.run(config(args, argv))
    paths = report.write(run_dir, raw)
    text = paths["markdown"].read_text()
    print(text)
    for kind, path in paths.items():
        print(f"{kind}: {path}", file=sys.stderr)
    if args.update_readme:
        update_readme(text)
    bad = [r for r in raw["records"] if r["status"] in ("wrong", "error")]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
