"""Safe YAML loading that remembers where every value came from.

Mappings and sequences load as dict/list subclasses carrying the line of each key
or item, so a schema error deep inside a spec can name the exact line.
"""

from __future__ import annotations

import yaml


class Located:
    line: int = 0
    lines: dict


class LDict(dict, Located):
    pass


class LList(list, Located):
    pass


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """Safe loading: plain data only, no tags that build Python objects. libyaml's parser
    when PyYAML has it (several times faster), with the same marks for line numbers."""


def _mapping(loader: _Loader, node: yaml.MappingNode) -> LDict:
    loader.flatten_mapping(node)
    out = LDict()
    out.line, out.lines = node.start_mark.line + 1, {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", key_node.start_mark) from None
        if key in out:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = key_node.start_mark.line + 1
    return out


def _sequence(loader: _Loader, node: yaml.SequenceNode) -> LList:
    out = LList(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.lines = {i: child.start_mark.line + 1 for i, child in enumerate(node.value)}
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)


def load_yaml(text: str):
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader derives from SafeLoader


def line_of(doc, path) -> int:
    """The line of the deepest element of `path` that the document can locate."""
    line, node = getattr(doc, "line", 1), doc
    for key in path:
        lines = getattr(node, "lines", None)
        if lines is None or key not in lines:
            break
        line = lines[key]
        node = node[key]
    return line
