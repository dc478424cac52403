"""YAML read as plain values, with bounded work: settings files, sweep files, ``--set``.

``yaml.safe_load`` builds no objects, but a few hundred bytes of nested aliases (``&a [*b,
*b, ...]``, "billion laughs") still expand to gigabytes once anything walks them, and
a file has no size limit. :func:`load_yaml_values` reads at most :data:`MAX_YAML_BYTES`
and refuses aliases; settings never need them.
"""

from __future__ import annotations

from typing import Any

import yaml

#: The most bytes of YAML text read (a sweep or settings file is a few hundred).
MAX_YAML_BYTES = 1 << 20


class _NoAliasLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses an alias (``*name``) when it meets one."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"an alias (*{event.anchor}) is not read: write the values out", event.start_mark
            )
        return super().compose_node(parent, index)


def load_yaml_values(text: str, where: str) -> Any:
    """The plain values ``text`` holds, or ``ValueError`` naming ``where``: text over
    :data:`MAX_YAML_BYTES`, invalid YAML, an alias, or nesting too deep to parse."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_YAML_BYTES:
        raise ValueError(f"{where} is larger than the limit of {MAX_YAML_BYTES:,} bytes for YAML settings")
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # a SafeLoader subclass: plain values only
    except yaml.YAMLError as error:
        raise ValueError(f"{where} is not valid YAML: {error}") from None
    except RecursionError:
        raise ValueError(f"{where} nests too deeply to be read") from None


__all__ = ["MAX_YAML_BYTES", "load_yaml_values"]
