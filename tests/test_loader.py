"""The loader: good specs load into Behaviours; bad ones give SpecErrors that name the file,
the right line, the behaviour and the field, and never hide their neighbours."""

from __future__ import annotations

import errno
import os

import pytest
from helpers import CITE, QUOTE, REPO, behaviour, line_of, load, load_one, spec_text

from kit.registry import CONSTANTS
from kit.spec.errors import SpecError
from kit.spec.loader import load_file, load_text, load_tree, spec_files, typed

GOOD_BEFORE = behaviour("x.good.before", """
    params:
      initval: {integers: {min: 1, max: 0xffffffff}}
    examples: [{initval: 1}]
    steps:
      - eventfd: {initval: $initval, flags: [EFD_NONBLOCK, EFD_CLOEXEC]}
        as: efd
      - read_u64: {fd: $efd}
        expect: {returns: 8, value: $initval}
""")
GOOD_AFTER = behaviour("x.good.after", """
    steps:
      - pipe2: {flags: O_NONBLOCK}
        as: p
      - write_u64: {fd: $p.write, value: 1, size: 3}
        expect: {returns: 3}
""")
FILE = "specs/x/t.yaml"


# -- good specs ---------------------------------------------------------------------------


def test_a_good_spec_loads_with_everything_it_says():
    text = spec_text(behaviour("eventfd.read.semaphore.decrements", """
        applies:
          kernel: ">=2.6.30"
          arch: [x86_64, aarch64]
          syscalls: [eventfd2]
        params:
          initval: {integers: {min: 1, max: 0xffffffff}}
          extra: {integers: {min: 0, max: {sub: [0xfffffffffffffffe, $initval]}}}
        assume: [{lt: [$extra, 100]}]
        examples: [{initval: 1, extra: 0}]
        max_examples: 20
        known_deviations:
          - platform: gvisor
            step: fdinfo
            observed: {fields: {eventfd-id: {present: false}}}
            reason: "gVisor does not print eventfd-id in fdinfo"
        steps:
          - eventfd: {initval: $initval, flags: [EFD_SEMAPHORE, EFD_NONBLOCK]}
            as: efd
          - read_u64: {fd: $efd}
            expect: {returns: 8, value: 1}
            differs:
              - kernel: "<2.6.30"
                expect: {errno: EINVAL}
                reason: "semaphore mode did not exist yet"
          - fdinfo: {fd: $efd}
            expect: {fields: {eventfd-count: {value: {sub: [$initval, 1]}}}}
    """, title="In semaphore mode a read returns 1"), family="eventfd")
    result = load_text(text, FILE)
    assert result.errors == []
    (b,) = result.behaviours
    assert b.id == "eventfd.read.semaphore.decrements"
    assert b.family == "eventfd"               # from `family:`, not the directory
    assert b.file == FILE and b.line == line_of(text, "- id: eventfd.read")
    assert b.cite.page == "eventfd(2)" and b.cite.quote == QUOTE
    assert b.applies.kernel == ">=2.6.30" and b.applies.arch == ("x86_64", "aarch64")
    assert b.applies.syscalls == ("eventfd2",)
    assert list(b.params) == ["initval", "extra"]
    assert b.examples == [{"initval": 1, "extra": 0}] and b.max_examples == 20
    assert b.known_deviations[0].platform == "gvisor"
    assert b.known_deviations[0].step == "fdinfo"
    assert b.known_deviations[0].observed == {"fields": {"eventfd-id": {"present": False}}}
    assert [s.action for s in b.steps] == ["eventfd", "read_u64", "fdinfo"]
    assert b.steps[0].bind == "efd" and b.steps[0].line == line_of(text, "- eventfd:")
    assert b.steps[1].expect == {"returns": 8, "value": 1}
    assert b.steps[1].differs[0].kernel == "<2.6.30"
    assert b.steps[1].differs[0].expect == {"errno": "EINVAL"}
    assert "id: eventfd.read.semaphore.decrements" in b.source
    assert "fdinfo" in b.source


def test_family_defaults_to_the_directory_name():
    result = load_text(spec_text(GOOD_BEFORE), "specs/eventfd/read.yaml")
    assert result.behaviours[0].family == "eventfd"


def test_each_behaviour_keeps_only_its_own_source():
    result = load(spec_text(GOOD_BEFORE, GOOD_AFTER))
    first, second = result.behaviours
    assert "x.good.after" not in first.source and "pipe2" not in first.source
    assert second.source.lstrip().startswith("- id: x.good.after")


def test_control_steps_load_with_their_substeps():
    b = load_one(spec_text(behaviour("x.control.all", """
        steps:
          - eventfd: {initval: 0}
            as: efd
          - in_thread: {after: 0.1, steps: [{write_u64: {fd: $efd, value: 7}}]}
            as: writer
          - read_u64: {fd: $efd}
            expect: {value: 7, blocks: {at_least: 0.05}}
            within: 2
          - join: writer
          - in_child:
              steps: [{write_u64: {fd: $efd, value: 1}}]
          - sleep: 0.01
    """)))
    actions = [s.action for s in b.steps]
    assert actions == ["eventfd", "in_thread", "read_u64", "join", "in_child", "sleep"]
    assert b.steps[1].after == 0.1 and b.steps[1].substeps[0].action == "write_u64"
    assert b.steps[2].within == 2
    assert b.steps[4].substeps[0].args == {"fd": "$efd", "value": 1}


def test_untestable_behaviour_has_no_steps():
    b = load_one(spec_text(behaviour("x.cannot.see", 'untestable: "no user-space experiment sees it"')))
    assert b.untestable and b.steps == []


def test_typed_strips_the_line_tracking_types():
    b = load_one(spec_text(GOOD_BEFORE))
    plain = typed(b.params)
    assert type(plain) is dict and type(plain["initval"]["integers"]) is dict


def test_every_file_under_specs_loads_without_errors():
    assert spec_files(REPO / "specs"), "no spec files found under specs/"
    loaded = load_tree(REPO / "specs")
    errors = [str(e) for result in loaded for e in result.errors]
    assert errors == [], "\n".join(errors)
    ids = [b.id for result in loaded for b in result.behaviours]
    assert len(ids) == len(set(ids)), "a behaviour id is used twice across spec files"


def test_load_file_reports_an_unreadable_file(tmp_path):
    result = load_file(tmp_path / "specs" / "missing.yaml")
    assert result.behaviours == []
    assert "cannot read" in str(result.errors[0])


# -- bad specs: every error names file, line, behaviour and field --------------------------

H = "  - id: x.bad.one\n    title: A bad behaviour\n    cite: " + CITE + "\n"

# name -> (bad behaviour text, line marker, field, fragments that the message must contain)
BAD = {
    "missing cite": (
        "  - id: x.bad.one\n    title: A bad behaviour\n    steps:\n      - eventfd: {}\n",
        "- id: x.bad.one", None, ["cite", "required"]),
    "unknown operation": (
        H + "    steps:\n      - eventfdd: {initval: 0}\n",
        "eventfdd", "steps[0].eventfdd", ["unknown operation", "'eventfdd'",
                                          "did you mean 'eventfd'"]),
    "unknown operation in a thread": (
        H + "    steps:\n      - eventfd: {}\n        as: efd\n      - in_thread:\n"
            "          steps:\n            - read_u64: {fd: $efd}\n            - epoll_creat: {}\n"
            "        as: t\n      - join: t\n",
        "epoll_creat", "steps[1].in_thread.steps[1].epoll_creat",
        ["unknown operation", "did you mean 'epoll_create"]),
    "unknown argument": (
        H + "    steps:\n      - eventfd: {initval: 0, flagz: 0}\n",
        "flagz", "steps[0].eventfd.flagz", ["'flagz'", "did you mean 'flags'"]),
    "missing required argument": (
        H + "    steps:\n      - read_u64: {size: 8}\n",
        "read_u64", "steps[0].read_u64.fd", ["missing required field 'fd'"]),
    "unknown constant": (
        H + "    steps:\n      - eventfd: {initval: 0, flags: EFD_NONBLOK}\n",
        "EFD_NONBLOK", "steps[0].eventfd.flags", ["unknown constant EFD_NONBLOK",
                                                  "did you mean EFD_NONBLOCK"]),
    "unknown constant in a flag list": (
        H + "    steps:\n      - eventfd: {}\n        as: efd\n"
            "      - poll: {fd: $efd, events: [POLLIN, POLOUT]}\n",
        "POLOUT", "steps[1].poll.events", ["unknown constant POLOUT", "did you mean POLLOUT"]),
    "unknown constant in an expectation": (
        H + "    steps:\n      - eventfd: {}\n        as: efd\n      - poll: {fd: $efd}\n"
            "        expect: {bits: {set: POLLINN}}\n",
        "POLLINN", "steps[1].expect.bits", ["unknown constant POLLINN"]),
    "unbound reference": (
        H + "    steps:\n      - read_u64: {fd: $nope}\n",
        "$nope", "steps[0].read_u64.fd", ["$nope is not a parameter"]),
    "unbound reference in an expectation": (
        H + "    steps:\n      - eventfd: {}\n        as: efd\n      - read_u64: {fd: $efd}\n"
            "        expect: {value: $initval}\n",
        "$initval", "steps[1].expect.value", ["$initval is not a parameter"]),
    "reference to a later step's name": (
        H + "    steps:\n      - read_u64: {fd: $efd}\n      - eventfd: {}\n        as: efd\n",
        "read_u64", "steps[0].read_u64.fd", ["$efd is not a parameter or an earlier step"]),
    "reference to a later parameter": (
        H + "    params:\n      a: {integers: {min: 0, max: $b}}\n"
            "      b: {integers: {min: 0, max: 3}}\n    steps:\n      - eventfd: {initval: $a}\n",
        "max: $b", "params.a", ["$b is not a parameter"]),
    "name bound twice": (
        H + "    steps:\n      - eventfd: {}\n        as: efd\n      - eventfd: {}\n"
            "        as: efd\n",
        ("as: efd", 2), "steps[1].as", ["'efd' is already bound"]),
    "invalid kernel range": (
        H + "    applies: {kernel: '>>6'}\n    steps:\n      - eventfd: {}\n",
        "applies", "applies.kernel", ["invalid kernel range '>>6'"]),
    "invalid kernel range in a variant": (
        H + "    steps:\n      - eventfd: {}\n        expect: {ok: true}\n        differs:\n"
            "          - kernel: 'six point nine'\n            expect: {ok: true}\n"
            "            reason: a long enough reason\n",
        "six point nine", "steps[0].differs[0].kernel", ["invalid kernel range"]),
    "invalid kernel range in a known deviation": (
        H + "    known_deviations:\n      - kernel: '=<5'\n        reason: a long enough reason\n"
            "    steps:\n      - eventfd: {}\n",
        "=<5", "known_deviations[0].kernel", ["invalid kernel range"]),
    "unknown expectation kind": (
        H + "    steps:\n      - eventfd: {}\n        expect: {errnoo: EINVAL}\n",
        "errnoo", "steps[0].expect.errnoo", ["'errnoo'", "did you mean 'errno'"]),
    "between with one bound": (
        H + "    steps:\n      - eventfd: {}\n        as: efd\n      - read_u64: {fd: $efd}\n"
            "        expect: {between: [5]}\n",
        "between: [5]", "steps[1].expect.between", ["between takes [LO, HI]", "got [5]"]),
    "between that is not a list": (
        H + "    steps:\n      - eventfd: {}\n        as: efd\n      - read_u64: {fd: $efd}\n"
            "        expect:\n          returns: 8\n          between: 5\n",
        "between: 5", "steps[1].expect.between", ["between takes [LO, HI]", "got 5"]),
    "at_least with a mapping that is not an expression": (
        H + "    steps:\n      - eventfd: {}\n        as: efd\n      - read_u64: {fd: $efd}\n"
            "        expect: {at_least: {minimum: 3}}\n",
        "at_least", "steps[1].expect.at_least",
        ["at_least takes one bound", "arithmetic form", "got {'minimum': 3}"]),
    "at_most with a boolean": (
        H + "    steps:\n      - eventfd: {}\n        as: efd\n      - read_u64: {fd: $efd}\n"
            "        expect: {at_most: true}\n",
        "at_most", "steps[1].expect.at_most", ["at_most takes one bound", "got True"]),
    "nested between with three bounds": (
        H + "    steps:\n      - eventfd: {}\n        as: efd\n      - fdinfo: {fd: $efd}\n"
            "        expect:\n          fields:\n            pos: 0\n"
            "            eventfd-count: {between: [1, 2, 3]}\n",
        "eventfd-count", "steps[1].expect.fields.eventfd-count.between",
        ["between takes [LO, HI]", "got [1, 2, 3]"]),
    "nested at_least with a mapping that is not an expression": (
        H + "    steps:\n      - eventfd: {}\n        as: efd\n      - fdinfo: {fd: $efd}\n"
            "        expect: {fields: {eventfd-count: {at_least: {add: 1, sub: 2}}}}\n",
        "fields", "steps[1].expect.fields.eventfd-count.at_least",
        ["at_least takes one bound", "got {'add': 1, 'sub': 2}"]),
    "unbound reference in a bound": (
        H + "    steps:\n      - eventfd: {}\n        as: efd\n      - fdinfo: {fd: $efd}\n"
            "        expect: {fields: {eventfd-count: {between: [0, $nope]}}}\n",
        "fields", "steps[1].expect.fields.eventfd-count.between", ["$nope is not a parameter"]),
    "unknown constant in not": (
        H + "    steps:\n      - eventfd: {}\n        as: efd\n      - read_u64: {fd: $efd}\n"
            "        expect: {not: EFD_NONBLOK}\n",
        "not:", "steps[1].expect.not", ["unknown constant EFD_NONBLOK"]),
    "unknown errno name": (
        H + "    steps:\n      - eventfd: {}\n        expect: {errno: ENOTANERRNO}\n",
        "ENOTANERRNO", "steps[0].expect.errno", ["unknown errno ENOTANERRNO"]),
    "unknown errno name in a list": (
        H + "    steps:\n      - eventfd: {}\n        expect: {errno: [EINVAL, EFOO]}\n",
        "EFOO", "steps[0].expect.errno", ["unknown errno EFOO"]),
    "example with wrong parameter names": (
        H + "    params:\n      a: {integers: {min: 0, max: 3}}\n    examples: [{b: 1}]\n"
            "    steps:\n      - eventfd: {initval: $a}\n",
        "examples", "examples[0]", ["exactly the parameters ['a']", "'b'"]),
    "example missing a parameter": (
        H + "    params:\n      a: {integers: {min: 0, max: 3}}\n"
            "      b: {integers: {min: 0, max: 3}}\n    examples:\n      - {a: 1, b: 2}\n"
            "      - {a: 1}\n    steps:\n      - eventfd: {initval: $a}\n",
        "{a: 1}", "examples[1]", ["exactly the parameters ['a', 'b']", "['b']"]),
    "join of an unknown thread": (
        H + "    steps:\n      - eventfd: {}\n      - join: ghost\n",
        "join: ghost", "steps[1].join", ["join names 'ghost'", "no earlier in_thread"]),
    "in_thread without as": (
        H + "    steps:\n      - in_thread: {steps: [{eventfd: {}}]}\n",
        "in_thread", "steps[0]", ["in_thread needs `as"]),
    "a step with two operations": (
        H + "    steps:\n      - eventfd: {}\n        close: {fd: 3}\n",
        "- eventfd: {}", "steps[0]", ["exactly one operation", "'eventfd'", "'close'"]),
    "a step with no operation": (
        H + "    steps:\n      - note: only a note\n",
        "note: only", "steps[0]", ["exactly one operation", "none"]),
    "expect on a join": (
        H + "    steps:\n      - in_thread: {steps: [{eventfd: {}}]}\n        as: t\n"
            "      - join: t\n        expect: {ok: true}\n",
        "expect: {ok: true}", "steps[1]", ["join produces nothing to expect"]),
    "bad id": (
        "  - id: NotDotted\n    title: A bad behaviour\n    cite: " + CITE + "\n"
        "    steps:\n      - eventfd: {}\n",
        "- id: NotDotted", "id", ["does not match"]),
    "steps and untestable": (
        H + "    untestable: because it is impossible\n    steps:\n      - eventfd: {}\n",
        "- id: x.bad.one", None, ["untestable", "steps"]),
    "bad citation page": (
        ("  - id: x.bad.one\n    title: A bad behaviour\n"
         "    cite: {page: eventfd, section: DESCRIPTION, quote: \"a quote here\"}\n"
         "    steps:\n      - eventfd: {}\n"),
        "cite:", "cite.page", ["does not match"]),
    "unknown parameter kind": (
        H + "    params:\n      a: {integer: {min: 0, max: 3}}\n    steps:\n"
            "      - eventfd: {initval: $a}\n",
        "integer:", "params.a.integer", ["'integer'", "did you mean 'integers'"]),
    "sleep out of range": (
        H + "    steps:\n      - sleep: 50\n",
        "sleep: 50", "steps[0].sleep", ["50"]),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_a_bad_behaviour_names_file_line_id_and_field_and_spares_the_others(case):
    bad, marker, field, fragments = BAD[case]
    text = spec_text(GOOD_BEFORE, bad, GOOD_AFTER)
    result = load_text(text, FILE)

    # The neighbours still load, in order, as if nothing happened.
    assert [b.id for b in result.behaviours] == ["x.good.before", "x.good.after"], \
        [str(e) for e in result.errors]
    (error,) = result.errors
    assert isinstance(error, SpecError)
    needle, nth = marker if isinstance(marker, tuple) else (marker, 1)
    expected_id = "NotDotted" if case == "bad id" else "x.bad.one"
    start = line_of(text, f"- id: {expected_id}")
    expected_line = line_of(text, needle, nth, after=start - 1)
    assert error.file == FILE
    assert error.line == expected_line, f"{error} (expected line {expected_line})"
    assert error.behaviour == expected_id
    if field is not None:
        assert error.field == field
    message = str(error)
    assert message.startswith(f"{FILE}:{expected_line}: behaviour {expected_id} ")
    if field is not None:
        assert f" field {field}: " in message
    for fragment in fragments:
        assert fragment in message, message


def test_several_bad_behaviours_each_get_their_own_error():
    text = spec_text(GOOD_BEFORE, BAD["unknown constant"][0],
                     BAD["unknown errno name"][0].replace("x.bad.one", "x.bad.two"),
                     BAD["bad id"][0], GOOD_AFTER)
    result = load_text(text, FILE)
    assert [b.id for b in result.behaviours] == ["x.good.before", "x.good.after"]
    assert sorted(e.behaviour for e in result.errors) == ["NotDotted", "x.bad.one", "x.bad.two"]
    lines = {e.behaviour: e.line for e in result.errors}
    assert lines["x.bad.one"] == line_of(text, "EFD_NONBLOK")
    assert lines["x.bad.two"] == line_of(text, "ENOTANERRNO")


def test_duplicate_id_names_the_second_and_keeps_the_first():
    text = spec_text(GOOD_BEFORE, GOOD_AFTER, GOOD_BEFORE.replace("title: Behaviour",
                                                                  "title: Again"))
    result = load_text(text, FILE)
    assert [b.id for b in result.behaviours] == ["x.good.before", "x.good.after"]
    (error,) = result.errors
    first, second = line_of(text, "- id: x.good.before", 1), line_of(text, "- id: x.good.before",
                                                                     2)
    assert (error.line, error.behaviour, error.field) == (second, "x.good.before", "id")
    assert f"duplicate id (first at line {first})" in str(error)
    assert str(error).startswith(f"{FILE}:{second}: behaviour x.good.before field id: ")


def test_missing_cite_names_the_field_cite():
    text = spec_text(GOOD_BEFORE, BAD["missing cite"][0], GOOD_AFTER)
    (error,) = load_text(text, FILE).errors
    assert error.field == "cite"


# -- errors that break the whole file -----------------------------------------------------


@pytest.mark.parametrize("text, marker, fragment", [
    pytest.param("behaviours:\n  - id: x.a.b\n    title: [unclosed\n    cite: x\n", None,
                 "not valid YAML", id="unclosed flow sequence"),
    pytest.param("behaviours:\n  - id: x.a.b\n\ttitle: a tab\n", "\ttitle", "not valid YAML",
                 id="tab indentation"),
    pytest.param("behaviours:\n  - id: x.a.b\n    title: one\n    title: two\n",
                 "title: two", "duplicate key 'title'", id="duplicate key"),
    pytest.param("behaviours:\n  - id: x.a.b\n    title: !!python/object:os.system ls\n",
                 "!!python", "not valid YAML", id="python tag refused"),
])
def test_invalid_yaml_names_file_and_line(text, marker, fragment):
    result = load_text(text, FILE)
    assert result.behaviours == []
    (error,) = result.errors
    assert error.file == FILE and fragment in str(error)
    if marker:
        assert error.line == line_of(text, marker), str(error)
    else:  # the parser notices an unclosed `[` on the line after it
        assert error.line in (3, 4), str(error)
    assert str(error).startswith(f"{FILE}:{error.line}:")


@pytest.mark.parametrize("text", [
    "- just\n- a list\n", "just a string\n", "family: x\n", "behaviours: 3\n",
    "behaviours:\n  x: 1\n", "",
], ids=["list", "scalar", "no behaviours", "behaviours not a list", "behaviours a mapping",
        "empty"])
def test_top_level_must_be_a_mapping_with_a_behaviours_list(text):
    result = load_text(text, FILE)
    assert result.behaviours == []
    (error,) = result.errors
    assert error.line == 1
    assert "a spec file is a mapping with a `behaviours` list" in str(error)
    assert str(error).startswith(f"{FILE}:1:")


def test_an_unknown_top_level_key_fails_the_file_with_its_line():
    text = "family: x\nbehavours: []\n" + spec_text(GOOD_BEFORE)
    result = load_text(text, FILE)
    assert result.behaviours == []
    (error,) = result.errors
    assert error.line == line_of(text, "behavours")
    assert "'behavours'" in str(error) and "did you mean 'behaviours'" in str(error)


# -- the closed expression language --------------------------------------------------------


def test_constants_resolve_and_lists_or_together():
    from kit.spec.expressions import evaluate

    assert evaluate(["EFD_NONBLOCK", "EFD_CLOEXEC"], {}) == \
        CONSTANTS["EFD_NONBLOCK"] | CONSTANTS["EFD_CLOEXEC"]
    assert evaluate({"sub": [10, "$a", 1]}, {"a": 3}) == 6
    assert evaluate({"add": [1, 2, 3]}, {}) == 6
    assert evaluate({"min": [4, "$a"]}, {"a": 3}) == 3
    assert evaluate({"max": [4, "$a"]}, {"a": 3}) == 4
    assert evaluate({"or": [1, 4]}, {}) == 5
    assert evaluate("$p.read", {"p": {"read": 7, "write": 8}}) == 7
    assert evaluate("$ev.5", {"ev": {5: 1}}) == 1
    assert evaluate("__import__('os')", {}) == "__import__('os')"   # never code


def test_unbound_reference_at_run_time_is_an_error_not_a_crash():
    from kit.spec.expressions import UnboundReference, evaluate

    with pytest.raises(UnboundReference, match=r"\$p.nope"):
        evaluate("$p.nope", {"p": {"read": 1}})
    with pytest.raises(UnboundReference, match=r"\$x is not bound"):
        evaluate("$x", {})


def test_names_bound_in_a_thread_come_back_with_the_join():
    text = spec_text(behaviour("x.thread.names", """
        steps:
          - eventfd: {initval: 0}
            as: efd
          - in_thread: {steps: [{dup: {fd: $efd}, as: copy}]}
            as: t
          - join: t
          - fd_link: {fd: $copy}
            expect: {matches: 'eventfd'}
    """))
    assert load_text(text, FILE).errors == []


def test_a_nested_matches_pattern_is_not_a_constant():
    text = spec_text(behaviour("x.nested.matches", """
        steps:
          - eventfd: {}
            as: efd
          - exec_probe: {fd: $efd}
            expect: {fields: {link: {matches: EVENTFD}}}
    """))
    assert load_text(text, FILE).errors == []


@pytest.mark.parametrize("alias", ["EWOULDBLOCK", "EOPNOTSUPP", "EDEADLK"])
def test_errno_aliases_are_accepted(alias):
    assert hasattr(errno, alias)
    text = spec_text(behaviour("x.errno.alias", f"""
        steps:
          - eventfd: {{}}
            expect: {{errno: {alias}}}
    """))
    assert load_text(text, FILE).errors == []


def _doc_yaml_blocks() -> list[str]:
    import re

    return re.findall(r"```yaml\n(.*?)```", (REPO / "docs" / "spec-language.md").read_text(),
                      re.DOTALL)


def test_the_documented_example_spec_loads():
    example = _doc_yaml_blocks()[0]
    assert "behaviours:" in example
    result = load_text(example, "specs/eventfd/doc-example.yaml")
    assert [str(e) for e in result.errors] == []
    assert [b.id for b in result.behaviours] == ["eventfd.read.semaphore.decrements"]


def test_the_documented_bounds_example_loads():
    (block,) = [b for b in _doc_yaml_blocks() if "between:" in b]
    setup = ("- timerfd_create: {clockid: CLOCK_MONOTONIC, flags: TFD_NONBLOCK}\n  as: tfd\n"
             "- timerfd_settime: {fd: $tfd, value_ns: $value_ns, interval_ns: $interval_ns}\n")
    steps = "\n".join("      " + line for line in (setup + block).splitlines())
    text = spec_text(behaviour("x.doc.bounds", f"""
    params:
      value_ns: {{integers: {{min: 2000000000, max: 3000000000}}}}
      interval_ns: {{integers: {{min: 1, max: 3000000000}}}}
    steps:
{steps}
"""))
    result = load_text(text, FILE)
    assert [str(e) for e in result.errors] == []
    fields = result.behaviours[0].steps[2].expect["fields"]
    assert fields["value_ns"] == {"between": [{"sub": ["$value_ns", 1000000000]}, "$value_ns"]}


# -- texts that passed the schema are not validated again (kit.spec.validated) -----------


def test_a_valid_text_is_validated_once_and_loads_the_same_after(tmp_path, monkeypatch):
    from kit.spec import loader, validated

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    text = spec_text(behaviour("x.cached", "steps:\n  - eventfd: {}\n"))
    first = load_text(text, "a.yaml")
    assert validated.passed(text)

    class Refuses:
        def iter_errors(self, _doc):
            raise AssertionError("validated again")

    monkeypatch.setattr(loader, "_VALIDATOR", Refuses())
    again = load_text(text, "a.yaml")
    assert [b.id for b in again.behaviours] == [b.id for b in first.behaviours] == ["x.cached"]
    assert not again.errors


def test_a_text_with_a_schema_error_is_reported_every_time(tmp_path, monkeypatch):
    from kit.spec import validated

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    text = spec_text(behaviour("x.bad", "steps:\n  - eventfd: {initval: many}\n"))
    for _ in range(2):
        [error] = load_text(text, "a.yaml").errors
        assert error.field.startswith("steps[0].eventfd.initval")
    assert not validated.passed(text)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_a_cache_the_user_cannot_read_only_costs_time(tmp_path):
    """A run that dropped root's privileges keeps root's $HOME, whose cache it may not read."""
    from kit.adapter.process import run_forked

    cache = tmp_path / "cache"
    (cache / "kit" / "validated").mkdir(parents=True)
    cache.chmod(0o700)
    text = spec_text(behaviour("x.private", "steps:\n  - eventfd: {}\n"))

    def load_as_nobody():
        os.environ["XDG_CACHE_HOME"] = str(cache)
        os.setgroups([])
        os.setresgid(65534, 65534, 65534)
        os.setresuid(65534, 65534, 65534)
        return [b.id for b in load_text(text, "a.yaml").behaviours]

    assert run_forked(load_as_nobody, 60) == ("ok", ["x.private"])


def test_an_unwritable_cache_only_costs_time(tmp_path, monkeypatch):
    from kit.spec import validated

    (tmp_path / "kit").write_text("a file where the directory would go")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    text = spec_text(behaviour("x.uncached", "steps:\n  - eventfd: {}\n"))
    for _ in range(2):
        assert [b.id for b in load_text(text, "a.yaml").behaviours] == ["x.uncached"]
    assert not validated.passed(text)
