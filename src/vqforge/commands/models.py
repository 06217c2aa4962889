"""`vqforge models`: the trained models that ship with vqforge, and what each is for."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="list the bundled trained models (use their names with --model)",
                       description="List the trained models that ship with vqforge. Any command's --model accepts "
                                   "their names, and vqforge.load(NAME) loads them from Python.")
    p.add_argument("--json", action="store_true", help="print the model cards as JSON")
    p.add_argument("--available", action="store_true",
                   help="list the original's released models (vqforge pull NAME; --model taming/NAME) and which are "
                        "in the cache")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from ..api import card_sampling
    from ..bundled import list_models

    if args.available:
        return _available(args.json)
    models = list_models()
    if args.json:
        print(json.dumps([{"name": m.name, "kind": m.kind, "path": str(m.path), **m.card} for m in models], indent=2))
        return 0
    if not models:
        print("no bundled models in this installation")
        return 0
    width = max(len(m.name) for m in models)
    for m in models:
        print(f"{m.name:<{width}}  {m.summary}")
        for key in ("use", "trained_on"):
            if m.card.get(key):
                print(f"{'':<{width}}  {key.replace('_', ' ')}: {m.card[key]}")
        sampling = card_sampling(m.card)
        if sampling:
            settings = ", ".join(f"{k} {v}" for k, v in sampling.items())
            print(f"{'':<{width}}  sampling defaults (sample, complete, serve): {settings}")
    print(f"\nuse a name wherever a model is expected: vqforge sample --model {models[0].name} ...; "
          f"vqforge.load({models[0].name!r})")
    print("the original's released models: vqforge models --available (then --model taming/NAME)")
    return 0


def _available(as_json: bool) -> int:
    import json

    from ..hub.home import vqforge_home
    from ..hub.taming import statuses

    rows = statuses()
    if as_json:
        print(json.dumps([{"name": f"taming/{s.model.name}", "summary": s.model.summary, "page": s.model.page,
                           "config_url": s.model.config_url, "checkpoint_url": s.model.checkpoint_url,
                           "cached": s.converted, "path": str(s.path) if s.converted else None,
                           "downloaded_bytes": s.downloading} for s in rows], indent=2))
        return 0
    width = max(len(s.model.name) for s in rows) + len("taming/")
    for s in rows:
        state = ("cached" if s.converted else f"partly downloaded ({s.downloading / 2**20:.0f} MiB)" if s.downloading
                 else "download" if s.model.direct else "by hand")
        print(f"{'taming/' + s.model.name:<{width}}  {state:<9}  {s.model.summary}")
    print(f"\ncache: {vqforge_home()} ($VQFORGE_HOME); `vqforge pull NAME` downloads and converts one "
          f"('by hand': download the folder its page links, `vqforge pull NAME` says where to put the files)")
    return 0
