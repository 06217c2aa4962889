"""`vqforge evaluate recon|samples|nll`: the field's standard numbers, as JSON for scripts and a table for people.

Each measurement is one call into :mod:`vqforge.evaluate` (``evaluate_recon``, ``evaluate_samples``,
``evaluate_nll``); its sub-command lives in ``evaluate_<what>.py``, the flags and the table they share in
``evaluate_common.py``.
"""

from __future__ import annotations

from . import evaluate_nll, evaluate_recon, evaluate_samples


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="measure models: reconstruction metrics, sample FID/KID, token NLL",
                       description="Evaluate a VQGAN's reconstructions, a folder of samples, or a transformer's "
                                   "likelihood. Each writes --json OUT and prints a short table.")
    ev = p.add_subparsers(dest="evaluate_command", metavar="WHAT", required=True)
    evaluate_recon.add_parser(ev)
    evaluate_samples.add_parser(ev)
    evaluate_nll.add_parser(ev)
