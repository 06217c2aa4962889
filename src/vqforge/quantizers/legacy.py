"""The flat quantizer record that vqforge wrote before each kind had its own config.

Up to commit 6c712e4 ``model.quantizer`` was one 18-field record holding the settings of every kind.
Model directories, run directories and checkpoints written then still hold it. Reading one as the kind it
names keeps that kind's settings (old names are renamed by the kind's ``renamed_keys``) and drops the
others: silently at their old default, with a notice otherwise (the old code ignored them too), except
the options the old code refused for kinds without them, which stay errors.
"""

from __future__ import annotations

from typing import Any

from ..config.variants import flat_record_upgrade

#: the settings of the flat record and their defaults
FLAT_DEFAULTS: dict[str, Any] = {
    "n_embed": 1024, "embed_dim": 256, "beta": 0.25, "legacy": False, "kl_weight": 5e-4, "temp_init": 1.0,
    "straight_through": True, "ema_decay": 0.99, "ema_eps": 1e-5, "codebook_dim": 0, "kmeans_init": False,
    "kmeans_iters": 10, "restart_after": 0, "entropy_weight": 0.0, "entropy_temperature": 0.01,
    "fsq_levels": [8, 5, 5, 5], "fsq_data_init": False,
}
#: options that the old code refused, rather than ignored, for kinds without them
REFUSED = frozenset({"kmeans_init", "restart_after", "entropy_weight"})

upgrade_flat_record = flat_record_upgrade(
    FLAT_DEFAULTS, "a config written before each quantizer kind had its own settings", REFUSED)
