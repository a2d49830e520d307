"""python -m bench [NAME [ARGS...]]: every benchmark in BENCHMARKS, or the one named with its own
arguments (python -m bench NAME --help)."""
from __future__ import annotations

import importlib
import sys

BENCHMARKS = ("train_step", "simulate")


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        print("benchmarks:", ", ".join(BENCHMARKS))
        return 0
    if argv:
        if argv[0] not in BENCHMARKS:
            print(f"unknown benchmark {argv[0]!r}; choose one of {', '.join(BENCHMARKS)}", file=sys.stderr)
            return 2
        return importlib.import_module(f"bench.{argv[0]}").main(argv[1:])
    status = 0
    for name in BENCHMARKS:
        status |= importlib.import_module(f"bench.{name}").main([])
        print()
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
