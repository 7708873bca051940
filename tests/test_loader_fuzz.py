"""Fuzzing the spec loader: whatever a spec file holds (broken YAML, wrong types, unknown
operations, out-of-range values, code-building YAML tags), loading yields behaviours or
SpecErrors naming file and line, never another exception, and never runs code."""

from __future__ import annotations

import copy

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kit.spec.errors import SpecError
from kit.spec.loader import load_text

GOOD = {
    "family": "fuzz",
    "behaviours": [{
        "id": "fuzz.read.resets",
        "title": "A read returns the counter and resets it",
        "cite": {"page": "eventfd(2)", "section": "DESCRIPTION",
                 "quote": "returns 8 bytes containing that value"},
        "applies": {"kernel": ">=2.6.22", "arch": ["x86_64"]},
        "params": {"initval": {"integers": {"min": 1, "max": 0xFFFFFFFF}}},
        "assume": [{"le": ["$initval", 100]}],
        "examples": [{"initval": 1}],
        "steps": [
            {"eventfd": {"initval": "$initval", "flags": ["EFD_NONBLOCK"]}, "as": "efd"},
            {"read_u64": {"fd": "$efd"}, "expect": {"returns": 8, "value": "$initval"}},
            {"fdinfo": {"fd": "$efd"}, "expect": {"fields": {"eventfd-count": 0}}},
        ],
    }],
}

FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])

ATOMS = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(),
                  st.text(max_size=20), st.sampled_from(
                      ["$efd", "$nope", "EFD_NONBLOCK", "EFD_NOPE", "eventfd", "evenfd",
                       ">=6.9", "not a range", "EINVAL", "ENOPE", {"add": [1]}, [], {}]))
VALUES = st.recursive(ATOMS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12)


def paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from paths(value, prefix + (i,))


ALL_PATHS = [p for p in paths(GOOD) if p]


def check(text: str) -> None:
    result = load_text(text, "fuzz.yaml")
    for error in result.errors:
        assert isinstance(error, SpecError)
        assert error.file == "fuzz.yaml" and error.line >= 0 and error.message
        assert str(error).startswith("fuzz.yaml:")
    for behaviour in result.behaviours:
        assert behaviour.id and behaviour.cite.page


def test_the_unmutated_spec_loads():
    result = load_text(yaml.safe_dump(GOOD), "fuzz.yaml")
    assert not result.errors and len(result.behaviours) == 1


@FUZZ
@given(st.text(max_size=300))
def test_arbitrary_text_never_crashes_the_loader(text):
    check(text)


@FUZZ
@given(st.sampled_from(ALL_PATHS), VALUES, st.sampled_from(["replace", "delete", "add"]))
def test_a_mutated_spec_loads_or_errs_with_a_location(path, value, how):
    doc = copy.deepcopy(GOOD)
    node = doc
    for key in path[:-1]:
        node = node[key]
    last = path[-1]
    if how == "replace":
        node[last] = value
    elif how == "delete":
        del node[last]
    elif isinstance(node, dict):
        node[f"unknown_{last}"] = value
    else:
        node.append(value)
    check(yaml.safe_dump(doc, allow_unicode=True))


@FUZZ
@given(st.lists(st.text(alphabet="{}[]:-,'\"!&*#|> \n\tabc$0x1", max_size=40), max_size=8))
def test_yaml_shaped_noise_never_crashes_the_loader(lines):
    check("behaviours:\n" + "\n".join(lines))


def test_yaml_tags_that_build_objects_are_refused_and_never_run(tmp_path):
    marker = tmp_path / "ran"
    text = (f"behaviours: !!python/object/apply:os.system ['touch {marker}']\n")
    result = load_text(text, "evil.yaml")
    assert result.errors and not result.behaviours
    assert "not valid YAML" in str(result.errors[0])
    assert not marker.exists()
