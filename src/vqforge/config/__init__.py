"""Typed, frozen configuration dataclasses: YAML in and out, dotted overrides checked against the types.

Every component of vqforge has a ``@dataclass(frozen=True)`` config. This package turns any such dataclass
into plain YAML-able data (:func:`to_dict`, :func:`dump_yaml`), rebuilds it with type checks
(:func:`from_dict`, :func:`load_yaml`) and applies command-line overrides such as ``model.gpt.n_layer=12``
(:func:`apply_overrides`). There are no string import targets and no ``exec``.

A config class may also declare:

* ``renamed_keys: ClassVar[dict[str, str | None]]``: old key -> new key (dotted paths relative to the
  class; ``None`` for a key that is no longer used). Files and overrides that use an old key still work,
  with one notice naming the new key.
* a family of variants (quantizer kinds, conditioning modes): the family's base class holds a
  :class:`Variants` as ``variants: ClassVar[Variants]``; a field annotated with the base accepts any
  registered variant, chosen in YAML by a tag key (``kind: ema``, ``mode: class``). A family whose variants
  once shared one flat record reads such records through :func:`flat_record_upgrade`.
* checks in ``__post_init__`` that raise ``ConfigError.at("n_embed", "...")``: they are reported with the
  full key.

Every problem found is reported at once, each naming its key exactly as the command line accepts it,
the expected type and the value: ``model.gpt.n_layer: expected an integer, got 'wide'``.
"""

from .errors import ConfigError, join_key, notice
from .overrides import apply_overrides
from .read import dump_yaml, from_dict, load_yaml, to_dict
from .variants import Variants, flat_record_upgrade

__all__ = ["ConfigError", "Variants", "apply_overrides", "dump_yaml", "flat_record_upgrade", "from_dict", "join_key",
           "load_yaml", "notice", "to_dict"]
