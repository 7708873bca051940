"""Loader limits: a hostile or broken spec file is one error that names its file and line,
it is refused quickly, and it never stops the other files. Covered: YAML alias bombs and
other oversized documents, files that are not regular files (a FIFO, /dev/zero), an id
defined in two files, parameters that can draw nothing, and regular expressions (refused
when malformed, bounded in time when they run away)."""

from __future__ import annotations

import os
import re
import time

import pytest
from helpers import (
    READS_COUNTER,
    behaviour,
    line_of,
    load,
    load_one,
    run_kit,
    run_one,
    run_plugin,
    spec_text,
    write_spec,
)

from kit.engine.interpreter import CONFORMS, ERROR
from kit.spec import patterns, source
from kit.spec.loader import MAX_FILE_BYTES, load_file, load_tree

GOOD = behaviour("x.limits.good", READS_COUNTER, title="A read returns the counter")

# "Billion laughs": nine levels of nine aliases, about 500 bytes, 9**9 values expanded.
BOMB = """\
a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
behaviours: [*i]
"""
# Fast on an idle machine (milliseconds); generous for a loaded one, and far below the
# minutes an expanded bomb costs.
QUICK = 3.0


def _only_error(result):
    assert result.behaviours == []
    (error,) = result.errors
    return error


# -- documents beyond the bounds --------------------------------------------------------------


def test_an_alias_bomb_is_one_error_with_its_line_and_is_refused_quickly():
    assert len(BOMB) < 600
    started = time.monotonic()
    error = _only_error(load(BOMB))
    assert time.monotonic() - started < QUICK
    assert error.file == "specs/x/t.yaml"
    assert "values (YAML aliases expanded) by here" in error.message
    # the first level whose expansion passes the bound: 9**5 values under `e`
    assert error.line == line_of(BOMB, "e: &e")
    assert error.message.startswith(f"not loaded: the document holds more than "
                                    f"{source.MAX_VALUES} values")
    assert str(error).startswith(f"specs/x/t.yaml:{error.line}:")


def test_aliases_that_share_a_few_values_still_load():
    text = spec_text(
        behaviour("x.alias.first", """
            steps:
              - eventfd: {flags: &flags [EFD_NONBLOCK, EFD_CLOEXEC]}
                as: efd
              - fcntl: {fd: $efd, cmd: F_GETFL}
                expect: {bits: {set: O_NONBLOCK}}
        """),
        behaviour("x.alias.second", "steps:\n  - eventfd: {flags: *flags}\n"))
    result = load(text)
    assert result.errors == []
    assert result.behaviours[1].steps[0].args["flags"] == ["EFD_NONBLOCK", "EFD_CLOEXEC"]


def test_an_alias_that_contains_itself_is_an_error():
    text = spec_text(behaviour("x.alias.loop", "steps: &s\n  - eventfd: {}\n  - *s\n"))
    error = _only_error(load(text))
    assert "refers to a value that contains it" in error.message
    assert error.line > 1


def test_nesting_deeper_than_the_bound_is_an_error_not_a_recursion_crash():
    depth = source.MAX_DEPTH + 20
    text = spec_text(behaviour("x.deep", "steps:\n  - compute: {value: "
                               + "[" * depth + "1" + "]" * depth + "}\n"))
    error = _only_error(load(text))
    assert f"nested more than {source.MAX_DEPTH} levels deep" in error.message
    assert error.line == line_of(text, "- compute")


def test_a_file_larger_than_the_bound_is_refused_without_reading_it_all(tmp_path):
    path = tmp_path / "big.yaml"
    with open(path, "wb") as out:
        out.truncate(50 * MAX_FILE_BYTES)      # sparse: costs no disk
    error = _only_error(load_file(path))
    assert error.message == f"larger than {MAX_FILE_BYTES} bytes: not read as a spec"
    assert (error.file, error.line) == (str(path), 1)


def test_a_file_that_is_not_utf8_is_an_error(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"behaviours: [caf\xe9]\n")
    assert "not UTF-8 text" in _only_error(load_file(path)).message


def test_a_loader_failure_on_one_file_is_an_error_for_that_file_only(tmp_path, monkeypatch):
    from kit.spec import loader

    bad = write_spec(tmp_path, spec_text(GOOD), name="a.yaml")
    write_spec(tmp_path, spec_text(behaviour("x.limits.other", READS_COUNTER)), name="b.yaml")
    real = loader.load_text

    def flaky(text, file):
        if file == str(bad):
            raise RecursionError("maximum recursion depth exceeded")
        return real(text, file)

    monkeypatch.setattr(loader, "load_text", flaky)
    results = load_tree(tmp_path / "specs")
    assert [b.id for r in results for b in r.behaviours] == ["x.limits.other"]
    (error,) = [e for r in results for e in r.errors]
    assert error.file == str(bad)
    assert error.message == ("kit error while loading this file: RecursionError: maximum "
                             "recursion depth exceeded")


# -- files that are not regular files ---------------------------------------------------------


@pytest.fixture
def odd_files(tmp_path):
    """specs/ with a good file, a FIFO and a symlink to /dev/zero, all named *.yaml."""
    write_spec(tmp_path, spec_text(GOOD), name="good.yaml")
    odd = tmp_path / "specs" / "x"
    os.mkfifo(odd / "fifo.yaml")
    (odd / "zero.yaml").symlink_to("/dev/zero")
    return tmp_path


@pytest.mark.parametrize("name, kind", [("fifo.yaml", "a FIFO"),
                                        ("zero.yaml", "a character device")])
def test_a_fifo_or_a_device_named_directly_is_refused_at_once(odd_files, name, kind):
    path = odd_files / "specs" / "x" / name
    started = time.monotonic()
    error = _only_error(load_file(path))
    assert time.monotonic() - started < QUICK
    assert error.message == f"not a regular file ({kind}): not read as a spec"


def test_a_fifo_and_dev_zero_among_the_specs_do_not_hang_kit_list(odd_files):
    listed = run_kit(odd_files, "list", "--specs", str(odd_files / "specs"), "--json")
    assert listed.ret == 0, listed.output
    assert "x.limits.good" in listed.stdout


def test_naming_a_fifo_as_the_specs_makes_kit_list_exit_2_with_the_reason(odd_files):
    fifo = odd_files / "specs" / "x" / "fifo.yaml"
    listed = run_kit(odd_files, "list", "--specs", str(fifo))
    assert listed.ret == 2, listed.output
    assert f"spec error: {fifo}:1: not a regular file (a FIFO)" in listed.stderr


def test_a_fifo_and_dev_zero_among_the_specs_do_not_hang_collection_or_kit_run(odd_files):
    ran = run_plugin(odd_files, "-q")
    assert ran.statuses() == {"x.limits.good": "conforms"}, ran.output
    report = odd_files / "out"
    run = run_kit(odd_files, "run", "--specs", str(odd_files / "specs"), "--report",
                  str(report), "-n", "0", report_dir=report)
    assert run.ret == 0, run.output
    assert run.statuses() == {"x.limits.good": "conforms"}


# -- a bad file beside good ones --------------------------------------------------------------


@pytest.fixture
def bomb_beside_good(tmp_path):
    write_spec(tmp_path, spec_text(GOOD), name="good.yaml")
    write_spec(tmp_path, BOMB, name="bomb.yaml")
    return tmp_path


def test_a_bomb_is_one_error_item_and_the_good_specs_still_run(bomb_beside_good):
    ran = run_plugin(bomb_beside_good, "-q")
    assert ran.ret == 1, ran.output
    verdicts = {b["file"].rsplit("/", 1)[-1]: b for b in ran.report["behaviours"]}
    assert verdicts["good.yaml"]["status"] == "conforms"
    assert verdicts["bomb.yaml"]["status"] == "error"
    assert "values (YAML aliases expanded) by here" in verdicts["bomb.yaml"]["message"]
    assert len(ran.report["behaviours"]) == 2
    assert "1 failed, 1 passed" in ran.stdout


def test_collection_beside_a_bomb_takes_well_under_a_second_or_so(bomb_beside_good):
    collected = run_plugin(bomb_beside_good, "--collect-only", "-q", report=False)
    took = re.search(r"2 tests collected in ([0-9.]+)s", collected.stdout)
    assert took, collected.output
    assert float(took.group(1)) < QUICK


def test_kit_list_names_the_bomb_and_lists_the_good_specs_quickly(bomb_beside_good):
    started = time.monotonic()
    listed = run_kit(bomb_beside_good, "list", "--specs", str(bomb_beside_good / "specs"))
    # the interpreter's start-up included; a bomb expanded would take minutes
    assert time.monotonic() - started < 30
    assert listed.ret == 2, listed.output
    assert "x.limits.good" in listed.stdout
    assert "bomb.yaml:" in listed.stderr and "aliases expanded" in listed.stderr


# -- one id, two files ------------------------------------------------------------------------


@pytest.fixture
def duplicate_across_files(tmp_path):
    first = write_spec(tmp_path, spec_text(GOOD), name="a.yaml")
    second = write_spec(tmp_path, spec_text(behaviour("x.limits.other", READS_COUNTER), GOOD),
                        name="b.yaml")
    return tmp_path, first, second


def test_an_id_in_two_files_is_an_error_naming_both_places(duplicate_across_files):
    root, first, second = duplicate_across_files
    results = load_tree(root / "specs")
    loaded = [b.id for r in results for b in r.behaviours]
    assert sorted(loaded) == ["x.limits.good", "x.limits.other"]
    (error,) = [e for r in results for e in r.errors]
    second_line = line_of(second.read_text(), "- id: x.limits.good")
    assert (error.file, error.line, error.behaviour, error.field) == (
        str(second), second_line, "x.limits.good", "id")
    assert error.message == (f"duplicate id: already defined at {first}:"
                             f"{line_of(first.read_text(), '- id: x.limits.good')}")


def test_the_same_file_reached_through_two_roots_is_not_a_duplicate(duplicate_across_files):
    root, first, _ = duplicate_across_files
    results = load_tree(root / "specs", first)
    assert sum(len(r.errors) for r in results) == 1       # only the real duplicate


def test_kit_list_exits_2_on_an_id_in_two_files(duplicate_across_files):
    root, first, second = duplicate_across_files
    listed = run_kit(root, "list", "--specs", str(root / "specs"))
    assert listed.ret == 2, listed.output
    assert f"{second}:" in listed.stderr and f"already defined at {first}:" in listed.stderr


def test_kit_list_finds_an_id_repeated_across_two_spec_roots(tmp_path):
    one = write_spec(tmp_path / "one", spec_text(GOOD))
    two = write_spec(tmp_path / "two", spec_text(GOOD))
    listed = run_kit(tmp_path, "list", "--specs", str(one), "--specs", str(two))
    assert listed.ret == 2, listed.output
    assert f"already defined at {one}:" in listed.stderr


def test_collection_and_kit_run_make_the_second_definition_an_error_item(
        duplicate_across_files):
    root, first, _ = duplicate_across_files
    ran = run_plugin(root, "-q")
    by_file = sorted((b["file"].rsplit("/", 1)[-1], b["id"], b["status"])
                     for b in ran.report["behaviours"])
    assert by_file == [("a.yaml", "x.limits.good", "conforms"),
                       ("b.yaml", "x.limits.good", "error"),
                       ("b.yaml", "x.limits.other", "conforms")], ran.output
    assert f"already defined at {first}:" in ran.output
    report = root / "out"
    run = run_kit(root, "run", "--specs", str(root / "specs"), "--report", str(report),
                  "-n", "0", report_dir=report)
    assert run.ret == 2, run.output


# -- parameters that can draw nothing ---------------------------------------------------------


def _param_error(params: str, extra: str = ""):
    text = spec_text(behaviour("x.range", params + extra + "steps:\n  - eventfd: {}\n"))
    error = _only_error(load(text))
    assert error.behaviour == "x.range"
    return text, error


def test_min_above_max_is_a_load_error_naming_the_parameter_and_line():
    text, error = _param_error("params:\n  a: {integers: {min: 0, max: 3}}\n"
                               "  b: {integers: {min: 10, max: 0x5}}\n")
    assert error.field == "params.b"
    assert error.line == line_of(text, "  b: {integers")
    assert error.message == "min 10 is above max 5: the range is empty"


def test_a_range_empty_for_every_earlier_draw_is_a_load_error():
    text, error = _param_error("params:\n  a: {integers: {min: 5, max: 9}}\n"
                               "  b: {integers: {min: 0, max: {sub: [3, $a]}}}\n")
    assert error.field == "params.b" and error.line == line_of(text, "  b: {integers")
    assert "max (at most -2) is below min (at least 0)" in error.message


def test_a_range_empty_for_only_some_earlier_draws_loads_and_those_draws_are_skipped():
    b = load_one(spec_text(behaviour("x.range.some", """
        params:
          a: {integers: {min: 0, max: 9}}
          b: {integers: {min: 0, max: {sub: [3, $a]}}}
        steps:
          - compute: {value: {add: [$a, $b]}}
            expect: {at_most: 3}
    """)))
    from hypothesis import given, settings

    from kit.spec.strategies import behaviour_params

    seen = []

    @settings(max_examples=50, database=None, deadline=None)
    @given(behaviour_params(b))
    def draws(params):
        seen.append(params)
        assert params["b"] <= 3 - params["a"]

    draws()
    assert seen


def test_a_bound_that_is_not_an_integer_is_a_load_error():
    _, error = _param_error("params:\n  a: {integers: {min: 0.5, max: 3}}\n")
    assert (error.field, error.message) == ("params.a", "min must be an integer, got 0.5")


def test_invalid_flags_whose_valid_flags_cover_every_bit_is_a_load_error():
    _, error = _param_error("params:\n  f: {invalid_flags: {valid: [EFD_SEMAPHORE], bits: 1}}\n")
    assert error.field == "params.f"
    assert "cover all 1 bits: no value has a bit outside them" in error.message


def test_an_assumption_that_never_holds_is_a_load_error_naming_it():
    text, error = _param_error("params:\n  a: {integers: {min: 1, max: 9}}\n",
                               "assume:\n  - {le: [$a, 9]}\n  - {gt: [$a, {add: [4, 5]}]}\n")
    assert error.field == "assume[1]"
    assert error.line == line_of(text, "- {gt:")
    assert error.message == "gt can never hold: $a is in [1, 9], add(4, 5) in [9, 9]"


def test_an_empty_choice_list_is_a_load_error_with_its_line():
    text, error = _param_error("params:\n  a: {sampled_from: []}\n")
    assert error.field == "params.a.sampled_from"
    assert error.line == line_of(text, "  a: {sampled_from")


# -- regular expressions ----------------------------------------------------------------------


@pytest.mark.parametrize("expect, field", [
    ("{matches: 'anon_inode:[(eventfd'}", "steps[1].expect.matches"),
    ("{fields: {link: {matches: '*eventfd'}}}", "steps[1].expect.fields.link.matches"),
])
def test_a_malformed_regex_is_a_load_error_with_file_line_and_field(expect, field):
    text = spec_text(behaviour("x.regex.bad", f"""
        steps:
          - eventfd: {{}}
            as: efd
          - fd_link: {{fd: $efd}}
            expect: {expect}
    """))
    error = _only_error(load(text))
    assert (error.behaviour, error.field) == ("x.regex.bad", field)
    assert error.line == line_of(text, "expect: {")
    assert error.message.startswith("invalid regular expression")
    assert "at position" in error.message


def test_a_good_regex_still_matches():
    outcome = run_one(spec_text(behaviour("x.regex.good", r"""
        steps:
          - eventfd: {}
            as: efd
          - fd_link: {fd: $efd}
            expect: {matches: '^anon_inode:\[?eventfd\]?$'}
    """)))
    assert outcome.status == CONFORMS, outcome.trace()


RUNAWAY = spec_text(behaviour("x.regex.runaway", """
    steps:
      - compute: {value: "%s"}
        expect: {matches: '^(a|aa)+$'}
""" % ("a" * 60 + "b")))


def test_a_runaway_regex_is_a_kit_error_naming_the_pattern_not_a_timeout(monkeypatch):
    monkeypatch.setattr(patterns, "MATCH_TIMEOUT", 0.2)
    started = time.monotonic()
    outcome = run_one(RUNAWAY)
    assert time.monotonic() - started < 10
    assert outcome.status == ERROR, outcome.trace()
    assert "regular expression /^(a|aa)+$/ took longer than 0.2s" in outcome.message
    assert outcome.records[-1].status == ERROR


def test_a_runaway_regex_under_the_plugin_is_an_error_verdict(tmp_path):
    write_spec(tmp_path, RUNAWAY)
    ran = run_plugin(tmp_path, "-q")
    verdict = ran.verdicts()["x.regex.runaway"]
    assert verdict["status"] == "error", ran.output
    assert "took longer than" in verdict["message"]
