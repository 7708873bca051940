"""The JSON Schema of spec files, generated from the operation registry.

Generated rather than hand-written so that an operation added to the adapter is
immediately valid in specs; `kit schema` prints it and schema/spec.schema.json is
the published copy (a test keeps the two identical).
"""

from __future__ import annotations

import kit.adapter  # noqa: F401 - registers every operation
from kit.confinement import SYSCTLS
from kit.model import MODELS
from kit.registry import OPERATIONS
from kit.spec.model import BASES

NAME = r"^[A-Z][A-Z0-9_]*$"
REF = r"^\$[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_-]+)*$"
ARITH = ("add", "sub", "mul", "or", "and", "min", "max", "div")
PREDICATES = ("eq", "ne", "lt", "le", "gt", "ge")
CONTROL = ("in_thread", "join", "in_child", "sleep", "wait_blocked", "waiters", "woken",
           "repeat")
STEP_KEYS = ("as", "expect", "differs", "within", "note")
# A `woken` step's expectation kinds (at_least / at_most bound the number woken there) and
# those no other step may use; the names a waiter's and a loop iteration's steps get bound.
GROUP_KINDS = ("exactly", "at_least", "at_most", "none", "all", "which", "order")
ONLY_GROUP_KINDS = ("exactly", "none", "all", "which", "order")
WAITER_INDEX, ITERATION = "waiter", "iteration"
# Bound in every example by the profile (kit.engine.profiles), so no parameter may take
# them: how long a step that must see nothing happen watches (seconds, milliseconds), and
# the share of a loop's rounds the profile runs, for an operation that loops by itself
# (race_loop: {share: $loop_share}).
QUIET, QUIET_MS, LOOP_SHARE_NAME = "quiet", "quiet_ms", "loop_share"
PROFILE_NAMES = {QUIET: "the profile's quiet window", QUIET_MS: "the profile's quiet window",
                 LOOP_SHARE_NAME: "the profile's share of a loop"}

EXPR = {
    "description": "an integer, a $reference, a CONSTANT, a list (bitwise OR) or one arithmetic form",
    "anyOf": [
        {"type": "integer"},
        {"type": "number"},
        {"type": "boolean"},
        {"type": "null"},
        {"type": "string", "pattern": f"{REF}|{NAME}"},
        {"type": "array", "items": {"$ref": "#/$defs/expr"}},
        {"type": "object", "minProperties": 1, "maxProperties": 1, "additionalProperties": False,
         "properties": {op: {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/expr"}}
                        for op in ARITH}},
    ],
}

# A bound of an ordered comparison: a number or something that evaluates to one. Narrower
# than EXPR (no booleans, null, plain strings or OR-lists, which `between: [LO, HI]` would
# make ambiguous) so that a bad form is caught when the spec loads.
BOUND = {
    "description": "a number, a $reference, a CONSTANT or one arithmetic form",
    "anyOf": [
        {"type": "number"},
        {"type": "string", "pattern": f"{REF}|{NAME}"},
        EXPR["anyOf"][-1],
    ],
}

KIND_SCHEMA = {
    "int": {"$ref": "#/$defs/expr"},
    "fd": {"$ref": "#/$defs/expr"},
    "flags": {"$ref": "#/$defs/expr"},
    "seconds": {"$ref": "#/$defs/expr"},
    "bool": {"anyOf": [{"type": "boolean"}, {"type": "string", "pattern": REF}]},
    "str": {"type": "string"},
    "list": {"type": "array"},
    "any": {},
}

EXPECT = {
    "type": "object",
    "additionalProperties": False,
    "minProperties": 1,
    "properties": {
        "ok": {"type": "boolean", "description": "the call succeeded (true) or failed (false)"},
        "returns": {"$ref": "#/$defs/expr", "description": "the return value"},
        "errno": {"description": "the call failed with this errno (or one of these)",
                  "anyOf": [{"type": "string", "pattern": "^E[A-Z0-9]+$"},
                            {"type": "array", "minItems": 1,
                             "items": {"type": "string", "pattern": "^E[A-Z0-9]+$"}}]},
        "value": {"description": "the value the call produced (number read, fd, link...)"},
        "bits": {"type": "object", "additionalProperties": False, "minProperties": 1,
                 "description": "bits that must be set / clear in the value (readiness, flags)",
                 "properties": {"set": {"$ref": "#/$defs/expr"},
                                "clear": {"$ref": "#/$defs/expr"}}},
        "fields": {"type": "object", "minProperties": 1,
                   "description": "per-field expectations on a mapping value: a plain value or "
                                  "a nested expectation (value, bits, matches, at_least, "
                                  "at_most, between, not, present, fields)",
                   "additionalProperties": {"$ref": "#/$defs/field_expect"}},
        "matches": {"type": "string", "description": "a regular expression the value must match"},
        "blocks": {"type": "object", "additionalProperties": False,
                   "minProperties": 1, "maxProperties": 1,
                   "description": "the call blocks: for at least this long (seconds), or "
                                  "asleep: true, seen asleep in the kernel while it ran",
                   "properties": {"at_least": {"$ref": "#/$defs/bound"},
                                  "asleep": {"const": True}}},
        "returns_within": {"type": "number", "exclusiveMinimum": 0,
                           "description": "the call returns within this many seconds"},
        "at_least": {"$ref": "#/$defs/bound", "description": "the value is a number >= this"},
        "at_most": {"$ref": "#/$defs/bound", "description": "the value is a number <= this"},
        "between": {"type": "array", "minItems": 2, "maxItems": 2,
                    "items": {"$ref": "#/$defs/bound"},
                    "description": "[LO, HI]: the value is a number with LO <= value <= HI"},
        "not": {"description": "the value differs from this"},
        # Only on a `woken` step (the loader checks where each kind may go); there at_least
        # and at_most bound the number of waiters woken.
        "exactly": {"$ref": "#/$defs/expr",
                    "description": "woken: exactly this many waiters woke within the window"},
        "none": {"const": True, "description": "woken: no waiter woke within the window"},
        "all": {"const": True, "description": "woken: every waiter woke within the window"},
        "which": {"type": "array", "items": {"$ref": "#/$defs/expr"},
                  "description": "woken: exactly these waiters (by index from 0) woke"},
        "order": {"type": "array", "items": {"$ref": "#/$defs/expr"},
                  "description": "woken: these waiters woke, finishing in this order"},
    },
}

ORDER_KINDS = ("at_least", "at_most", "between")
# The kinds that also apply to one field of a mapping value.
_NESTED = ("value", "bits", "matches", "fields", *ORDER_KINDS, "not")

FIELD_EXPECT = {
    "anyOf": [
        {"type": ["integer", "number", "string", "boolean", "null", "array"]},
        EXPR["anyOf"][-1],  # an arithmetic form, e.g. {sub: [$initval, 1]}
        {"type": "object", "additionalProperties": False, "minProperties": 1,
         "properties": {**{kind: EXPECT["properties"][kind] for kind in _NESTED},
                        "present": {"type": "boolean"}}},
    ]
}

PARAM = {
    "type": "object", "minProperties": 1, "maxProperties": 1, "additionalProperties": False,
    "properties": {
        "integers": {"type": "object", "additionalProperties": False, "required": ["min", "max"],
                     "description": "integers in [min, max]; the bounds and their neighbours "
                                    "are always among the values tried",
                     "properties": {"min": {"$ref": "#/$defs/expr"},
                                    "max": {"$ref": "#/$defs/expr"}}},
        "sampled_from": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/expr"}},
        "booleans": {"const": True},
        "flag_sets": {"type": "array", "minItems": 1,
                      "items": {"type": "string", "pattern": NAME},
                      "description": "any combination (bitwise OR) of these flags"},
        "invalid_flags": {"type": "object", "additionalProperties": False, "required": ["valid"],
                          "description": "values of `bits` width with at least one bit outside "
                                         "`valid`",
                          "properties": {"valid": {"type": "array",
                                                   "items": {"type": "string", "pattern": NAME}},
                                         "bits": {"type": "integer", "minimum": 1,
                                                  "maximum": 64}}},
        "just": {"$ref": "#/$defs/expr"},
    },
}

PREDICATE = {
    "type": "object", "minProperties": 1, "maxProperties": 1, "additionalProperties": False,
    "properties": {p: {"type": "array", "minItems": 2, "maxItems": 2,
                       "items": {"$ref": "#/$defs/expr"}} for p in PREDICATES},
}

KERNEL_RANGE = {"type": "string", "minLength": 1,
                "description": "a version range such as '>=6.9' or '>=2.6.27,<6.9'"}

# A kernel change a gate depends on (kit.spec.changes): `since: CHANGE` holds on kernels that
# carry it, `before: CHANGE` on kernels that lack it.
CHANGE = {
    "type": "object", "additionalProperties": False,
    "required": ["subject", "release"],
    "description": "a kernel change: the commit's subject and id, the first mainline release "
                   "that has it, and the first release of each older stable series that "
                   "carries a backport",
    "properties": {
        "subject": {"type": "string", "minLength": 5, "description": "the commit's subject"},
        "commit": {"type": "string", "pattern": "^[0-9a-f]{12,40}$",
                   "description": "the mainline commit id (leave it out, and say so in `note`, "
                                  "when it cannot be confirmed)"},
        "release": {"type": "string", "description": "e.g. '6.17' or '6.15-rc3'"},
        "backports": {"type": "array", "items": {"type": "string"},
                      "description": "e.g. ['6.12.43', '6.1.149']: from these stable releases "
                                     "on, their series carries the change too"},
        "note": {"type": "string", "minLength": 5,
                 "description": "what is not confirmed, e.g. a series whose backport release "
                                "is unknown"},
    },
}
GATE_PROPERTIES = {"since": CHANGE, "before": CHANGE}

DOCUMENTATION_DEFECT = {
    "type": "object", "additionalProperties": False,
    "required": ["claim", "kernel_does", "evidence"],
    "description": "the page and every kernel disagree: the steps check what the kernel does, "
                   "and reports show the behaviour as a documentation defect",
    "properties": {
        "claim": {"type": "string", "minLength": 10, "description": "what the page says"},
        "kernel_does": {"type": "string", "minLength": 10,
                        "description": "what every kernel does instead"},
        "evidence": {"type": "string", "minLength": 10,
                     "description": "the kernel source that shows it"},
        "since": {"type": "string", "minLength": 3, "description": "since when"},
    },
}

CONFIG_SYMBOL = {"type": "string", "pattern": r"^CONFIG_[A-Z0-9_]+$"}
KERNEL_CONFIG = {
    "type": "array", "minItems": 1,
    "description": "kernel build options that must be set (y, m or a value) in the target's "
                   "config; {any: [CONFIG_A, CONFIG_B]} when either will do (an option "
                   "renamed or split between releases)",
    "items": {"anyOf": [
        CONFIG_SYMBOL,
        {"type": "object", "additionalProperties": False, "required": ["any"],
         "properties": {"any": {"type": "array", "minItems": 2, "items": CONFIG_SYMBOL}}},
    ]},
}


def _op_schema(op) -> dict:
    return {"type": "object", "additionalProperties": False, "description": op.summary(),
            "required": list(op.required),
            "properties": {arg: KIND_SCHEMA[kind] for arg, kind in op.args.items()}}


def _step_schema() -> dict:
    props = {name: _op_schema(op) for name, op in sorted(OPERATIONS.items())}
    props.update({
        "in_thread": {"type": "object", "additionalProperties": False, "required": ["steps"],
                      "description": "run steps in a second thread (name it with `as`)",
                      "properties": {
                          "steps": {"$ref": "#/$defs/steps"},
                          "after": {"type": "number", "minimum": 0,
                                    "description": "seconds to wait before the steps"},
                          "when_blocked": {
                              "enum": [True, False, "child"],
                              "description": "first wait (bounded) until the spawning thread "
                                             "(true) or the process an in_child step forked "
                                             "(child) sleeps in a system call, so `after` is "
                                             "measured from the moment it blocked, however "
                                             "loaded the machine"}}},
        "join": {"type": "string", "description": "wait (bounded) for a named thread"},
        "wait_blocked": {
            "oneOf": [{"type": "string"},
                      {"type": "array", "minItems": 1, "items": {"type": "string"}}],
            "description": "wait (bounded) until each named thread sleeps in a blocking call "
                           "(or has finished), so a waker in this thread cannot come early"},
        "in_child": {"type": "object", "additionalProperties": False, "required": ["steps"],
                     "description": "run steps in a forked child process",
                     "properties": {"steps": {"$ref": "#/$defs/steps"}}},
        "waiters": {
            "type": "object", "additionalProperties": False, "required": ["count", "steps"],
            "description": "start `count` waiters (name the group with `as`), each running "
                           "the steps (its index is $waiter); returns once every one sleeps "
                           "in a blocking call",
            "properties": {"count": {"$ref": "#/$defs/expr"},
                           "kind": {"enum": ["thread", "process"],
                                    "description": "threads (default) or forked processes"},
                           "until_blocked": {
                               "type": "boolean",
                               "description": "false: go on at once, so the next step races "
                                              "with the waiters going to sleep (lost-wake-up "
                                              "loops); default true"},
                           "steps": {"$ref": "#/$defs/steps"}}},
        "woken": {"type": "string",
                  "description": "watch a waiters group for `within` seconds (default 1) and "
                                 "judge who woke: expect exactly, at_least, at_most, none, "
                                 "all, which, order"},
        "repeat": {
            "type": "object", "additionalProperties": False,
            "required": ["iterations", "seconds", "steps"],
            "description": "run the steps `iterations` times in the thorough profile (a share "
                           "in the others), stopping early after `seconds`; $iteration counts "
                           "from 1",
            "properties": {"iterations": {"type": "integer", "minimum": 1,
                                          "maximum": 1000000},
                           "seconds": {"type": "number", "exclusiveMinimum": 0,
                                       "maximum": 60},
                           "steps": {"$ref": "#/$defs/steps"}}},
        "sleep": {"type": "number", "minimum": 0, "maximum": 5},
        "as": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"},
        "expect": {"$ref": "#/$defs/expect"},
        "differs": {"type": "array", "minItems": 1, "items": {
            "type": "object", "additionalProperties": False,
            "required": ["expect", "reason"],
            "anyOf": [{"required": ["kernel"]}, {"required": ["since"]},
                      {"required": ["before"]}],
            "properties": {"kernel": KERNEL_RANGE, **GATE_PROPERTIES,
                           "expect": {"$ref": "#/$defs/expect"},
                           "reason": {"type": "string", "minLength": 10}}}},
        "within": {"type": "number", "exclusiveMinimum": 0, "maximum": 60,
                   "description": "bound on this step (seconds) before it is a timeout"},
        "note": {"type": "string"},
    })
    return {"type": "object", "minProperties": 1, "additionalProperties": False,
            "properties": props}


# What a target does instead of the documented behaviour, keyed by the failure itself: any
# other failure of the behaviour is a new deviation.
KNOWN_DEVIATION = {
    "type": "object", "additionalProperties": False, "required": ["reason"],
    # step + observed for a behaviour with steps, operation + disagreement for a model
    # behaviour: the loader checks which, with a message naming the field.
    "anyOf": [{"required": ["kernel"]}, {"required": ["platform"]}, {"required": ["since"]},
              {"required": ["before"]}, {"required": ["arch"]}],
    "properties": {
        "kernel": KERNEL_RANGE, "platform": {"type": "string"}, **GATE_PROPERTIES,
        "arch": {"type": "array", "minItems": 1, "items": {"type": "string"},
                 "description": "the ABIs (x86_64, i386, aarch64, ...) on which it happens"},
        "reason": {"type": "string", "minLength": 10},
        "step": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*(#[1-9][0-9]*)?$",
                 "description": "the step where the target differs: its `as` name, its "
                                "operation (when called once) or OPERATION#N (the Nth call "
                                "of it, in document order)"},
        "observed": {"type": "object", "additionalProperties": False, "minProperties": 1,
                     "description": "what that step gives instead, written as an expectation "
                                    "it meets; {timeout: true}: it does not return within its "
                                    "bound",
                     "properties": {**EXPECT["properties"],
                                    "timeout": {"const": True}}},
        "operation": {"type": "string",
                      "description": "model behaviours: the operation that disagrees"},
        "disagreement": {"type": "string", "minLength": 1,
                         "description": "model behaviours: a regular expression found in "
                                        "the disagreement's text"},
    },
}


def build_schema() -> dict:
    behaviour = {
        "type": "object",
        "additionalProperties": False,
        "required": ["id", "title", "cite"],
        "properties": {
            "id": {"type": "string", "pattern": r"^[a-z0-9_]+(\.[a-z0-9_]+)+$"},
            "title": {"type": "string", "minLength": 5},
            "cite": {"type": "object", "additionalProperties": False,
                     "required": ["page", "section", "quote"],
                     "properties": {"page": {"type": "string", "pattern": r"^[a-z_0-9]+\(\d\)$"},
                                    "section": {"type": "string"},
                                    "quote": {"type": "string", "minLength": 5},
                                    "source": {"type": "string"},
                                    "basis": {"enum": list(BASES),
                                              "description": "implementation: Linux's own "
                                              "behaviour where the page is silent or looser "
                                              "(cite.source names the kernel code or "
                                              "selftest); documented (the default): the "
                                              "page's claim"}}},
            "applies": {"type": "object", "additionalProperties": False, "properties": {
                "kernel": KERNEL_RANGE, **GATE_PROPERTIES,
                "arch": {"type": "array", "items": {"type": "string"}},
                "capabilities": {"type": "array", "items": {"type": "string",
                                                            "pattern": "^CAP_[A-Z_]+$"}},
                "without_capabilities": {"type": "array",
                                         "items": {"type": "string", "pattern": "^CAP_[A-Z_]+$"}},
                "syscalls": {"type": "array", "items": {"type": "string"}},
                "kernel_config": KERNEL_CONFIG,
                "without_kernel_config": {
                    "type": "array", "minItems": 1, "items": CONFIG_SYMBOL,
                    "description": "kernel build options that must not be set: for what a "
                                   "kernel built without them does"}}},
            "untestable": {"type": "string", "minLength": 10,
                           "description": "why no experiment from user space can check this"},
            "params": {"type": "object", "additionalProperties": {"$ref": "#/$defs/param"},
                       "propertyNames": {"pattern": r"^[a-z_][a-z0-9_]*$"}},
            "assume": {"type": "array", "items": {"$ref": "#/$defs/predicate"}},
            "examples": {"type": "array", "items": {"type": "object"}},
            "max_examples": {"type": "integer", "minimum": 1},
            "exclusive": {"type": "array", "minItems": 1, "uniqueItems": True,
                          "items": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
                          "description": "machine-wide state the behaviour changes or depends "
                                         "on (e.g. realtime_clock): behaviours naming the same "
                                         "one never run at the same time, on any worker"},
            "machine_wide": {"type": "array", "minItems": 1, "uniqueItems": True,
                             "items": {"enum": sorted(SYSCTLS)},
                             "description": "sysctls the behaviour sets (sysctl_set): it "
                                            "runs only with --allow-machine-wide, one at a "
                                            "time, and the values are restored afterwards "
                                            "(kit.engine.machine_wide)"},
            "known_deviations": {"type": "array", "items": KNOWN_DEVIATION},
            "documentation_defect": DOCUMENTATION_DEFECT,
            "steps": {"$ref": "#/$defs/steps"},
            "model": {"enum": sorted(MODELS),
                      "description": "run random operation sequences against this reference "
                                     "model (kit.model) instead of steps"},
        },
        "oneOf": [{"required": ["steps"]}, {"required": ["untestable"]},
                  {"required": ["model"]}],
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://example.invalid/syscall-conformance-kit/spec.schema.json",
        "title": "Syscall conformance kit: behaviour spec file",
        "type": "object",
        "additionalProperties": False,
        "required": ["behaviours"],
        "properties": {
            "family": {"type": "string"},
            "description": {"type": "string"},
            "behaviours": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/behaviour"}},
        },
        "$defs": {
            "behaviour": behaviour,
            "steps": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/step"}},
            "step": _step_schema(),
            "expect": EXPECT,
            "field_expect": FIELD_EXPECT,
            "expr": EXPR,
            "bound": BOUND,
            "param": PARAM,
            "predicate": PREDICATE,
        },
    }
