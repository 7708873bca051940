"""Safe YAML loading that remembers where every value came from.

Mappings and sequences load as dict/list subclasses carrying the line of each key
or item, so a schema error deep inside a spec can name the exact line.

A spec may come from someone else's pull request, so a document is bounded before it is
built: aliases may share values but not multiply them ("billion laughs"), nesting is
shallow, and an alias may not contain itself.
"""

from __future__ import annotations

import yaml

# Values in a document with every alias expanded. The largest spec file has under 2,000;
# validating this many takes a second or so, one expanded exponentially would take hours.
MAX_VALUES = 20_000
# Levels of nesting; specs use about 15. Building the document recurses per level.
MAX_DEPTH = 100


class TooLarge(Exception):
    """A document beyond the loader's bounds; `line` is where the excess shows."""

    def __init__(self, message: str, line: int):
        super().__init__(message)
        self.message, self.line = message, line


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


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def check_bounds(root: yaml.Node) -> None:
    """Raise TooLarge unless the composed document, aliases expanded, is within bounds.

    An alias is the very node its anchor names, so sizes are counted once per node
    (memoised): linear in the text, whatever the expansion would be."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node, depth: int) -> int:
        line = node.start_mark.line + 1
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise TooLarge("a YAML alias refers to a value that contains it", line)
        if depth > MAX_DEPTH:
            raise TooLarge(f"values nested more than {MAX_DEPTH} levels deep", line)
        open_nodes.add(key)
        total = 1
        for child in _children(node):
            total += size(child, depth + 1)
            if total > MAX_VALUES:
                raise TooLarge(f"the document holds more than {MAX_VALUES} values (YAML "
                               f"aliases expanded) by here; an alias may share a value, not "
                               f"multiply it", line)
        open_nodes.discard(key)
        sizes[key] = total
        return total

    size(root, 0)


def load_yaml(text: str):
    """The document, or TooLarge (or a yaml.YAMLError) without building an oversized one."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        check_bounds(root)
        return loader.construct_document(root)
    finally:
        loader.dispose()


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
