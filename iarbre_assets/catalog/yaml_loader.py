"""YAML reading that refuses duplicate keys (plain safe_load silently keeps the last one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class ConfigFileError(ValueError):
    """A catalogue or territory file is unreadable or invalid. The message names the file and the field."""


class _UniqueKeyLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, yaml.Mark] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first at line {seen[key].line + 1})", key_node.start_mark
            )
        seen[key] = key_node.start_mark
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: Path) -> dict:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError(f"{path}: cannot read the file ({exc.strerror})") from exc
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigFileError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigFileError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def format_validation_error(path: Path, exc: Exception, data: dict | None = None) -> str:
    """Turn a pydantic ValidationError into lines naming the file and the field path."""
    lines = []
    for err in getattr(exc, "errors", lambda: [])():
        loc = _readable_loc(err.get("loc", ()), data)
        lines.append(f"{path}: {loc}: {err.get('msg')}")
    return "\n".join(lines) or f"{path}: {exc}"


# pydantic inserts validator names and union discriminator tags into error locations
_VALIDATOR_TAGS = {"function-after", "function-before", "function-wrap", "wfs", "ign_wfs", "datafair",
                   "cartofriches", "file"}


def _readable_loc(loc: tuple, data: dict | None) -> str:
    parts: list[str] = []
    node: Any = data
    for item in loc:
        if isinstance(item, int):
            label = f"[{item}]"
            if isinstance(node, list) and item < len(node):
                node = node[item]
                if isinstance(node, dict) and "slug" in node:
                    label = f"[{item}] (slug {node['slug']!r})"
            parts.append(label)
        else:
            # pydantic adds tags for unions / function validators; keep only real field names
            if isinstance(node, dict) and item in node:
                node = node[item]
            elif item in _VALIDATOR_TAGS or "[" in str(item):
                continue
            else:
                node = None
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"
