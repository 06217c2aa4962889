"""vqforge: Taming Transformers (VQGAN + autoregressive transformer), faithful, fast and modern.

>>> import vqforge
>>> model = vqforge.load("MODEL_OR_RUN_DIR")                      # doctest: +SKIP
>>> model = vqforge.load_taming("orig-project.yaml", "last.ckpt")  # doctest: +SKIP
>>> images = vqforge.sample("fashion", n=4, class_="sneaker", seed=1)  # doctest: +SKIP
"""

__version__ = "0.1.0"

from .api import load, save_model  # noqa: E402
from .compat.load import load_taming  # noqa: E402
from .io import VQForgeError  # noqa: E402
from .quick import sample  # noqa: E402

__all__ = ["__version__", "load", "save_model", "load_taming", "sample", "VQForgeError"]
