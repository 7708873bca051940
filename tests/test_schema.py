"""The published JSON Schema is the generated one, and it describes what the loader accepts."""

from __future__ import annotations

import json

import jsonschema
import pytest
from helpers import REPO

from kit.registry import OPERATIONS
from kit.spec.schema import CONTROL, STEP_KEYS, build_schema

COMMITTED = REPO / "schema" / "spec.schema.json"
REGENERATE = "regenerate it with: kit schema > schema/spec.schema.json"


def test_committed_schema_is_the_generated_one():
    committed = json.loads(COMMITTED.read_text())
    generated = build_schema()
    if committed != generated:
        ops_now = set(generated["$defs"]["step"]["properties"])
        ops_then = set(committed.get("$defs", {}).get("step", {}).get("properties", {}))
        defs = sorted(k for k in set(generated["$defs"]) | set(committed.get("$defs", {}))
                      if generated["$defs"].get(k) != committed.get("$defs", {}).get(k))
        pytest.fail(f"{COMMITTED.relative_to(REPO)} is stale: step keys added "
                    f"{sorted(ops_now - ops_then)}, removed {sorted(ops_then - ops_now)}; "
                    f"differing $defs {defs}; {REGENERATE}", pytrace=False)


def test_committed_schema_is_formatted_as_kit_schema_prints_it():
    # `kit schema` prints json.dumps(indent=2, sort_keys=True) + newline: regenerating must
    # give a byte-identical file, so the diff of a regeneration shows only real changes.
    expected = json.dumps(build_schema(), indent=2, sort_keys=True) + "\n"
    assert COMMITTED.read_text() == expected, REGENERATE


def test_schema_is_a_valid_draft_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(build_schema())


def test_every_registered_operation_is_a_step_in_the_schema():
    step = build_schema()["$defs"]["step"]["properties"]
    for name, op in OPERATIONS.items():
        assert name in step, f"operation {name} is missing from the schema"
        assert set(step[name]["properties"]) == set(op.args)
        assert set(step[name]["required"]) == set(op.required)
    for word in (*CONTROL, *STEP_KEYS):
        assert word in step


def test_schema_rejects_what_the_loader_rejects_structurally():
    validator = jsonschema.Draft202012Validator(build_schema())
    good = {"behaviours": [{"id": "x.a", "title": "A title", "cite": {
        "page": "eventfd(2)", "section": "S", "quote": "quote"}, "steps": [{"eventfd": {}}]}]}
    assert not list(validator.iter_errors(good))
    for bad in (
        {"behaviours": []},                                           # empty
        {"behaviours": [{**good["behaviours"][0], "id": "NoDots"}]},  # id pattern
        {"behaviours": [{**good["behaviours"][0], "steps": [{"nosuchop": {}}]}]},
        {"behaviours": [{**good["behaviours"][0], "untestable": "because it is so"}]},
        {"behaviours": good["behaviours"], "extra": 1},
    ):
        assert list(validator.iter_errors(bad)), bad


def test_every_expectation_kind_is_in_the_schema_and_the_ordered_ones_nest():
    from kit.engine.expectations import CHECKS, ORDER_KINDS
    from kit.spec import schema

    assert set(build_schema()["$defs"]["expect"]["properties"]) == \
        set(CHECKS) | set(schema.ONLY_GROUP_KINDS)   # a `woken` step's own kinds
    assert ORDER_KINDS == schema.ORDER_KINDS
    nested = build_schema()["$defs"]["field_expect"]["anyOf"][-1]["properties"]
    assert {*ORDER_KINDS, "not", "value", "bits", "matches", "fields"} <= set(nested)
