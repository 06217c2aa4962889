"""`vqforge reconstruct` (being written)."""
def add_parser(sub) -> None:
    p = sub.add_parser("reconstruct", help="reconstruct an original Taming Transformers checkpoint")
    p.set_defaults(func=lambda a: 0)
