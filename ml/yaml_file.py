"""Reading the model stage's YAML files so that every way they can be unreadable is named.

A YAML scanner error says `<unicode string>` and a decoding error names no file; people fixing
a goal or catalogue file need the file, the line and the reason.
"""

from __future__ import annotations

from pathlib import Path

import yaml


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping.

    PyYAML keeps the last of two equal keys, so a goal written with `window_days` twice would
    silently train on the second.
    """


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict:
    seen: dict[object, int] = {}
    for key_node, _ in node.value:
        # Keys merged in with `<<` may be overridden; only keys written twice are refused.
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.get(key)
        except TypeError:  # an unhashable key; the constructor below reports it
            continue
        if first is not None:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"key {key!r} appears twice (first on line {first})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line + 1
    loader.flatten_mapping(node)
    return loader.construct_mapping(node, deep=True)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def read_yaml(path: Path, error: type[ValueError]) -> object:
    """The parsed document of a UTF-8 YAML file.

    Raises:
        error: The path is not a readable file, is not UTF-8, is not valid YAML or repeats a
            key; the message names the file and, for YAML problems, the line.
    """
    path = Path(path)
    if not path.exists():
        raise error(f"{path}: no such file")
    if not path.is_file():
        raise error(f"{path}: not a file (a folder?)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as problem:
        raise error(
            f"{path}: not UTF-8 text (byte {problem.object[problem.start]:#04x} at offset "
            f"{problem.start})"
        ) from None
    except OSError as problem:
        raise error(f"{path}: cannot be read ({problem.strerror})") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no Python objects
    except yaml.YAMLError as problem:
        mark = getattr(problem, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        reason = getattr(problem, "problem", None) or str(problem)
        raise error(f"{path}:{where} not valid YAML ({reason})") from None
