"""`vqforge convert` (being written)."""
def add_parser(sub) -> None:
    p = sub.add_parser("convert", help="convert an original Taming Transformers checkpoint")
    p.set_defaults(func=lambda a: 0)
