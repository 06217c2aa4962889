"""``vqforge bench``: vqforge timed side by side with the original Taming Transformers (this package; the scripts
run from a checkout, and their results, are in the repository's ``bench/`` folder).

* :mod:`.original`: the original (``taming-transformers-rom1504==0.0.6``), imported with stand-ins for what
  it needs and does not get here; never a dependency of vqforge.
* :mod:`.rows`, :mod:`.vqgan_rows`, :mod:`.gpt_rows`: a row is one piece of work done by several contestants
  (original, vqforge's exact fp32 path, vqforge's fast path) on the same weights and inputs.
* :mod:`.suites`: the ``cpu`` and ``gpu`` suites (sizes, targets, time budgets).
* :mod:`.measure`: interleaved timing, peak memory, the machine's description; :mod:`.runner` runs a suite.
* :mod:`.checks`: the GPU correctness checks (compiled decode vs eager, bf16 vs fp32 training, sliding window).
* :mod:`.render`: the markdown tables of docs/benchmarks.md, produced from a result's JSON.
"""

from .runner import run_suite
from .suites import SUITES

__all__ = ["run_suite", "SUITES"]
