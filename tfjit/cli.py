"""The `tfjit` command: `tfjit dump SCRIPT` prints the IR of every program SCRIPT compiles;
`tfjit bench ...` runs the benchmark harness."""
from __future__ import annotations

import argparse
import runpy
import sys

from .ir.graph import Graph
from .ir.printer import print_graph
from .runtime import hooks


def _dump(args: argparse.Namespace) -> int:
    out = open(args.output, "w") if args.output else sys.stdout

    def show(graph: Graph) -> None:
        print(print_graph(graph), file=out, flush=True)
        print(file=out)

    hooks.ON_COMPILE.append(show)
    sys.argv = [args.script, *args.script_args]
    try:
        runpy.run_path(args.script, run_name="__main__")
    finally:
        hooks.ON_COMPILE.remove(show)
        if out is not sys.stdout:
            out.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        from .bench.cli import main as bench_main

        return bench_main(argv[1:])
    parser = argparse.ArgumentParser(prog="tfjit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    dump = sub.add_parser("dump", help="run a script and print the IR of every program it compiles")
    dump.add_argument("script")
    dump.add_argument("script_args", nargs=argparse.REMAINDER)
    dump.add_argument("-o", "--output", help="write the IR here instead of stdout")
    sub.add_parser("bench", help="run the benchmark harness (tfjit bench --help)")
    args = parser.parse_args(argv)
    return _dump(args)


if __name__ == "__main__":
    sys.exit(main())
