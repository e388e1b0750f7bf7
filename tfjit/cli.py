"""The `tfjit` command: `tfjit dump ...` shows the IR of a program stage by stage;
`tfjit bench ...` runs the benchmark harness; `tfjit cache info|clear` manages the kernel cache."""
from __future__ import annotations

import argparse
import sys

from . import dump


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        from .bench.cli import main as bench_main

        return bench_main(argv[1:])
    if argv[:1] == ["cache"]:
        from .backends.kernel_cache import cli as cache_cli

        return cache_cli(argv[1:])
    parser = argparse.ArgumentParser(prog="tfjit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    dump.add_arguments(sub.add_parser("dump", help="show the IR of a script or function, stage by stage",
                                      description=dump.__doc__,
                                      formatter_class=argparse.RawDescriptionHelpFormatter))
    sub.add_parser("bench", help="run the benchmark harness (tfjit bench --help)")
    sub.add_parser("cache", help="show or clear the kernel cache (tfjit cache info|clear)")
    args = parser.parse_args(argv)
    return dump.main(args)


if __name__ == "__main__":
    sys.exit(main())
