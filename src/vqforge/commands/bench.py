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


def _render(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from ..benchmarks.render import combine, render, render_into
    from ..io import VQForgeError

    results = []
    for name in args.render:
        path = Path(name)
        try:
            result = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise VQForgeError(f"{path}: not a readable bench result ({e})") from None
        if not isinstance(result, dict) or "rows" not in result or "suite" not in result:
            raise VQForgeError(f"{path}: not a vqforge bench result (no suite / rows)")
        results.append(result)
    result = combine(results)
    command = args.command_line or (result.get("command") if len(results) == 1 else None)
    if args.into:
        render_into(args.into, result, command)
        print(f"{args.into}: {result['suite']} section updated from {', '.join(args.render)}")
    else:
        print(render(result, command), end="")
    return 0


def run(args: argparse.Namespace) -> int:
    from ..io import VQForgeError

    if args.render:
        return _render(args)
    if args.suite is None:
        raise VQForgeError("bench: choose --suite cpu or --suite gpu (or --render RESULT.json)")
    if args.repeat < 1:
        raise VQForgeError(f"bench: --repeat must be >= 1, got {args.repeat}")

    import shlex
    import sys

    import torch

    from ..benchmarks.render import render
    from ..benchmarks.runner import run_suite
    from ..devices import resolve_device
    from ..io import write_json

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.suite == "gpu" and device.type != "cuda":
        print("vqforge bench: note: the gpu suite on a CPU is slow at full size (use --quick to check it)")
    result = run_suite(args.suite, device, repeat=args.repeat, quick=args.quick, only=args.rows,
                       deadline_s=args.deadline, with_original=not args.no_original,
                       log=lambda s: print(s, flush=True), profile_top=args.profile)
    command = "vqforge " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["bench"] else None
    result["command"] = command
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    print()
    print(render(result, command), end="")
    failed = [r["id"] for r in result["rows"] if "error" in r]
    return 1 if failed else 0
