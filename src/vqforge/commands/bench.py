"""`vqforge bench`: time vqforge side by side with the original, or render a result into docs/benchmarks.md."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "bench", help="time vqforge against the original (same weights and inputs, one process)",
        description="Times vqforge and, when the original (taming-transformers-rom1504==0.0.6) is importable "
                    "(make bench-venv), the original too, on identical configs, weights and inputs, interleaved in "
                    "one process after warm-up. Suite cpu: VQGAN train step and reconstruct, GPT train step, GPT "
                    "sampling at batch 1 and 4. Suite gpu: the paper-size models. Prints a table; --json writes "
                    "the full result, --render turns a result into the markdown of docs/benchmarks.md.")
    p.add_argument("--suite", choices=("cpu", "gpu", "levers"), default=None,
                   help="cpu / gpu: vqforge against the original; levers: vqforge's fast path with one lever changed "
                        "at a time (CPU sizes)")
    p.add_argument("--json", default=None, metavar="FILE", help="write the result here (JSON)")
    p.add_argument("--repeat", type=int, default=3, metavar="N", help="timed rounds per row (default 3)")
    p.add_argument("--quick", action="store_true", help="toy model sizes: a smoke test of the suite, not a measurement")
    p.add_argument("--rows", nargs="+", default=None, metavar="ID", help="only these rows (ids as in the output)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default auto)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--deadline", type=float, default=None, metavar="S",
                   help="wall-clock budget in seconds; rows that would not finish in time are skipped")
    p.add_argument("--no-original", action="store_true", help="time vqforge only")
    p.add_argument("--profile", type=int, default=0, metavar="K",
                   help="also profile one run of each contestant and keep its K costliest operators")
    p.add_argument("--render", nargs="+", default=None, metavar="RESULT.json",
                   help="print the markdown tables of earlier results (several runs of one suite are combined) "
                        "instead of running anything")
    p.add_argument("--into", default=None, metavar="DOC.md",
                   help="with --render: replace the <!-- bench:SUITE --> section of this file")
    p.add_argument("--command-line", default=None, help="with --render: the command to quote in the section")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import shlex
    import sys

    from ..benchmarks.render import render, render_files
    from ..benchmarks.runner import bench
    from ..io import VQForgeError, write_json

    if args.render:
        print(render_files(args.render, args.into, args.command_line), end="")
        return 0
    if args.suite is None:
        raise VQForgeError("bench: choose --suite cpu or --suite gpu (or --render RESULT.json)")
    if args.repeat < 1:
        raise VQForgeError(f"bench: --repeat must be >= 1, got {args.repeat}")
    command = "vqforge " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["bench"] else None
    result = bench(args.suite, args.device, args.threads, command, log=lambda s: print(s, flush=True),
                   repeat=args.repeat, quick=args.quick, only=args.rows, deadline_s=args.deadline,
                   with_original=not args.no_original, profile_top=args.profile)
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    print()
    print(render(result, command), end="")
    return 1 if any("error" in r for r in result["rows"]) else 0
