"""Configuration errors and notices: every problem names its key as the command line spells it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

class ConfigError(ValueError):
    """Configuration problems, each ``(key, message)`` with the key as the command line spells it
    (``model.gpt.n_layer``); ``str()`` gives one line per problem, after the file when known."""

    def __init__(self, message: str = "", *, problems: Sequence[tuple[str, str]] = (),
                 source: str | Path | None = None):
        self.problems: list[tuple[str, str]] = list(problems) or [("", message)]
        self.source = str(source) if source else None
        super().__init__(self._text())

    @classmethod
    def at(cls, key: str, message: str) -> ConfigError:
        """One problem with the setting ``key`` (relative to the config class that raises it)."""
        return cls(problems=[(key, message)])

    def within(self, prefix: str) -> ConfigError:
        """The same problems with their keys under ``prefix`` (``gpt.n_layer`` -> ``model.gpt.n_layer``)."""
        return ConfigError(problems=[(join_key(prefix, k), m) for k, m in self.problems], source=self.source)

    def in_file(self, source: str | Path) -> ConfigError:
        """The same problems, attributed to the file ``source``."""
        return ConfigError(problems=self.problems, source=source)

    def _text(self) -> str:
        lines = [f"{k}: {m}" if k else m for k, m in self.problems]
        head = f"{self.source}: " if self.source else ""
        if len(lines) == 1:
            return head + lines[0]
        return head + f"{len(lines)} problems:\n  " + "\n  ".join(lines)


def join_key(prefix: str, key: Any) -> str:
    """``prefix.key`` (either may be empty)."""
    key = str(key)
    return f"{prefix}.{key}" if prefix and key else (prefix or key)


def show(value: Any, limit: int = 60) -> str:
    """``repr(value)``, shortened for messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def notice(text: str) -> None:
    """Tell the user something worth knowing that is not an error (``vqforge: text`` on stderr)."""
    print(f"vqforge: {text}", file=sys.stderr)
