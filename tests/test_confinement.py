"""Confinement of specs (kit.confinement, kit.adapter.scratch), tried as a hostile spec
author would: a spec reaches files only in its scratch directory and an allow-list of
kernel interfaces, and descriptors only of its own. A literal path is refused when the
spec loads (file, line, behaviour, field); a computed one when the step runs, as an
error verdict, never as a deviation of the kernel."""

from __future__ import annotations

import os
import re
import sysconfig
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import READS_COUNTER, behaviour, line_of, load, run_kit, run_one, spec_text, write_spec

from kit import confinement
from kit.adapter import files, scratch
from kit.engine.interpreter import CONFORMS, ERROR
from kit.engine.runner import check_isolated
from kit.engine.target import Target
from kit.registry import CONSTANTS

SITE_PACKAGES = Path(sysconfig.get_paths()["purelib"])


def _open_step(path: str, flags: str = "O_RDONLY") -> str:
    return f"steps:\n  - open_path: {{path: '{path}', flags: {flags}}}\n"


def _refused_at_load(text: str, field: str, needle: str = "open_path") -> str:
    """The single load error of a one-behaviour spec, checked for file, line and field."""
    result = load(text)
    assert result.behaviours == []
    [error] = result.errors
    assert (error.file, error.behaviour, error.field) == ("specs/x/t.yaml", "x.attack", field)
    assert error.line == line_of(text, needle)
    assert "refused" in error.message
    return error.message


def _computed(flags: str = "O_RDONLY", tail: str = "") -> str:
    """A spec whose path is the parameter `where`, so only the run can refuse it; `tail`
    is more steps, at column 0."""
    return spec_text(behaviour("x.attack", (
        f"params:\n  where: {{just: 0}}\n"
        f"steps:\n  - open_path: {{path: $where, flags: {flags}}}\n    as: f\n" + tail)))


def _run_at(path: str, text: str):
    """One example with `where` set to `path`, as a replay's parameters would set it."""
    return run_one(text, {"where": path})


# -- attack 1: writing an arbitrary file --------------------------------------------------


@pytest.mark.parametrize("path", ["/etc/kit-planted", "/tmp/kit-planted", "etc/passwd"])
def test_a_literal_path_outside_the_scratch_directory_is_refused_when_the_spec_loads(path):
    text = spec_text(behaviour("x.attack", _open_step(path, "[O_WRONLY, O_CREAT, O_TRUNC]")))
    message = _refused_at_load(text, "steps[0].open_path.path")
    assert repr(path) in message


def test_a_computed_path_outside_the_scratch_directory_is_an_error_and_writes_nothing(
        tmp_path):
    planted = tmp_path / "planted"
    text = _computed("[O_WRONLY, O_CREAT, O_TRUNC]")
    outcome = _run_at(str(planted), text)
    assert outcome.status == ERROR, outcome.trace()
    assert "refused" in outcome.message and str(planted) in outcome.message
    assert f"line {line_of(text, 'open_path')}:" in outcome.message
    assert not planted.exists()


def test_an_existing_file_outside_is_neither_truncated_nor_appended_to(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("intact")
    for flags in ("[O_WRONLY, O_TRUNC]", "[O_WRONLY, O_APPEND]", "O_RDWR"):
        tail = "  - write: {fd: $f, data: overwritten}\n"
        outcome = _run_at(str(victim), _computed(flags, tail))
        assert outcome.status == ERROR, (flags, outcome.trace())
    assert victim.read_text() == "intact"


# -- attack 2: planting a .pth file in the virtualenv ---------------------------------------


def test_planting_a_pth_file_in_site_packages_is_refused_at_load_and_at_run_time():
    pth = SITE_PACKAGES / "kit-planted.pth"
    text = spec_text(behaviour("x.attack", _open_step(str(pth), "[O_WRONLY, O_CREAT]")))
    _refused_at_load(text, "steps[0].open_path.path")
    outcome = _run_at(str(pth), _computed(
        "[O_WRONLY, O_CREAT]", "  - write: {fd: $f, data: 'import os; os.system(\"id\")'}\n"))
    assert outcome.status == ERROR and "refused" in outcome.message
    assert not pth.exists()


def test_a_pth_planting_spec_run_by_kit_is_an_error_verdict_and_plants_nothing(tmp_path):
    pth = SITE_PACKAGES / "kit-planted-by-run.pth"
    write_spec(tmp_path, spec_text(behaviour("x.attack", _open_step(str(pth), "[O_WRONLY, O_CREAT]")
                                             + "  - write: {fd: 0, data: 'import sys'}\n")))
    report = tmp_path / "report"
    ran = run_kit(tmp_path, "run", "--specs", "specs", "--report", str(report), "-n", "0",
                  report_dir=report)
    assert not pth.exists()
    assert ran.ret == 2, ran.output        # a kit/spec error, not "deviations found"
    assert "steps[0].open_path.path: refused" in ran.output


# -- attack 3: reading a secret into the reports --------------------------------------------


def test_etc_shadow_is_refused_when_the_spec_loads():
    text = spec_text(behaviour("x.attack", _open_step("/etc/shadow")))
    assert "/etc/shadow" in _refused_at_load(text, "steps[0].open_path.path")


def test_a_secret_outside_the_scratch_directory_never_reaches_a_report(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("KIT-SECRET-7f3a9c")
    # The expectation is wrong on purpose: were the read allowed, the deviation's trace
    # would carry the bytes read into every report.
    steps = _open_step(str(secret)) + "    as: f\n  - read: {fd: $f, size: 64}\n" \
        "    expect: {returns: 0}\n"
    write_spec(tmp_path, spec_text(behaviour("x.attack", steps)))
    report = tmp_path / "report"
    ran = run_kit(tmp_path, "run", "--specs", "specs", "--report", str(report), "-n", "0",
                  report_dir=report)
    assert ran.ret == 2 and "steps[0].open_path.path: refused" in ran.output, ran.output
    written = {p.name: p.read_bytes() for p in report.iterdir()}
    assert {"report.json", "report.md", "report.html", "junit.xml"} <= set(written)
    hexed = b"KIT-SECRET-7f3a9c".hex().encode()
    for name, data in written.items():
        assert b"KIT-SECRET" not in data and hexed not in data, name
    assert "KIT-SECRET" not in ran.output and hexed.decode() not in ran.output


@pytest.mark.parametrize("path", ["/proc/self/environ", "/proc/self/mem",
                                  "/proc/self/root/etc/shadow", "/proc/self/cwd/secret",
                                  "/proc/self/fd/0", "/proc/1/status", "/dev/sda"])
def test_proc_and_dev_entries_that_lead_elsewhere_or_hold_secrets_are_refused(path):
    text = spec_text(behaviour("x.attack", _open_step(path)))
    _refused_at_load(text, "steps[0].open_path.path")


# -- escapes: `..`, symbolic links, non-canonical paths -------------------------------------


@pytest.mark.parametrize("path", ["scratch:../planted", "scratch:a/../../planted",
                                  "scratch:/etc/passwd", "/proc/self/../1/environ",
                                  "/dev/./null", "//etc/passwd", "/dev/null/"])
def test_dot_dot_and_non_canonical_paths_are_refused(path):
    text = spec_text(behaviour("x.attack", _open_step(path)))
    _refused_at_load(text, "steps[0].open_path.path")


def test_a_computed_dot_dot_escape_is_refused_when_the_step_runs():
    outcome = _run_at("scratch:../../../etc/passwd", _computed())
    assert outcome.status == ERROR and "`..`" in outcome.message


@pytest.fixture(params=["openat2", "component by component"])
def resolver(request, monkeypatch):
    """Both ways of opening beneath the scratch directory: openat2(2), and the walk used
    where the kernel lacks it."""
    if request.param != "openat2":
        monkeypatch.setattr(scratch, "syscall_number", lambda name: None)
    elif _kernel_has_openat2():
        def not_here(*args):
            raise AssertionError("openat2(2) exists here, yet the walk was used")
        monkeypatch.setattr(scratch, "_walk_nofollow", not_here)
    return request.param


def _kernel_has_openat2() -> bool:
    import ctypes

    how = scratch._OpenHow(os.O_PATH, 0, scratch.RESOLVE_BENEATH)
    fd = scratch.libc.syscall(ctypes.c_long(scratch.syscall_number("openat2")),
                              ctypes.c_long(-100), ctypes.c_char_p(b"."), ctypes.byref(how),
                              ctypes.c_size_t(ctypes.sizeof(how)))   # -100: AT_FDCWD
    if fd < 0:
        return False
    os.close(fd)
    return True


def test_a_symlink_planted_in_the_scratch_directory_does_not_get_out(resolver, tmp_path,
                                                                     no_leaks):
    secret = tmp_path / "secret"
    secret.write_text("outside")
    with scratch.behaviour_root(), scratch.example() as directory:
        scratch.current()  # made on first use
        os.symlink(secret, os.path.join(directory, "to-file"))
        os.symlink(tmp_path, os.path.join(directory, "to-dir"))
        for name in ("scratch:to-file", "scratch:to-dir/secret"):
            for flags in (os.O_RDONLY, os.O_WRONLY | os.O_CREAT | os.O_TRUNC):
                with pytest.raises(confinement.Refused, match="symbolic link"):
                    files.open_path(name, flags)
    assert secret.read_text() == "outside"


def test_files_beneath_the_scratch_directory_open_either_way(resolver, no_leaks):
    with scratch.behaviour_root(), scratch.example() as directory:
        scratch.current()  # made on first use
        made = files.open_path("scratch:made", os.O_RDWR | os.O_CREAT | os.O_EXCL)
        assert made.ok and os.write(made.ret, b"x") == 1
        os.close(made.ret)
        assert os.listdir(directory) == ["made"]
        assert files.open_path("scratch:made", os.O_RDWR | os.O_CREAT | os.O_EXCL).errno \
            == "EEXIST"
        assert files.open_path("scratch:missing/x", os.O_RDONLY).errno == "ENOENT"
        for name in ("scratch:", "scratch:."):
            listing = files.open_path(name, os.O_RDONLY | os.O_DIRECTORY)
            assert listing.ok
            os.close(listing.ret)


def test_a_symlink_in_the_scratch_directory_during_a_run_is_an_error_verdict(monkeypatch):
    """No operation makes links; one placed there by someone else (here, the test) is
    refused as a spec error, never followed."""
    real = scratch.example

    @contextmanager
    def with_link():
        with real():
            directory = scratch.current()
            os.symlink("/etc/passwd", os.path.join(directory, "link"))
            yield directory

    monkeypatch.setattr(scratch, "example", with_link)
    outcome = _run_at("scratch:link", _computed(tail="  - read: {fd: $f, size: 16}\n"))
    assert outcome.status == ERROR and "symbolic link" in outcome.message


def test_an_allowed_interface_reached_through_a_symlink_is_refused(tmp_path, monkeypatch,
                                                                   no_leaks):
    """/proc/self/fd names what was really opened: a link on the way to an allowed path is
    caught after the read-only open, which has no effect, and the descriptor is closed."""
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "iface").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "final").symlink_to(tmp_path / "real" / "iface")
    allowed = confinement.Interface(f"{tmp_path}/(link/iface|final)", False, "test")
    monkeypatch.setattr(confinement, "_INTERFACE_RES",
                        [*confinement._INTERFACE_RES, (re.compile(allowed.pattern), allowed)])
    with pytest.raises(confinement.Refused, match="led to"):
        files.open_path(f"{tmp_path}/link/iface", os.O_RDONLY)
    with pytest.raises(confinement.Refused, match="symbolic link"):
        files.open_path(f"{tmp_path}/final", os.O_RDONLY)


# -- read-only kernel interfaces --------------------------------------------------------------


@pytest.mark.parametrize("flags", ["O_WRONLY", "O_RDWR", "[O_RDONLY, O_TRUNC]",
                                   "[O_WRONLY, O_APPEND]", "[O_RDONLY, O_CREAT]"])
def test_writing_a_read_only_interface_is_refused_naming_the_flags(flags):
    text = spec_text(behaviour("x.attack", _open_step("/proc/sys/fs/epoll/max_user_watches",
                                                      flags)))
    assert "max_user_watches" in _refused_at_load(text, "steps[0].open_path.flags")


def test_creating_an_interface_is_refused_even_where_writing_is_allowed():
    text = spec_text(behaviour("x.attack", _open_step("/dev/null", "[O_WRONLY, O_CREAT]")))
    assert "never created" in _refused_at_load(text, "steps[0].open_path.flags")


def test_computed_write_flags_on_a_read_only_interface_are_an_error_and_change_nothing():
    path = "/proc/sys/fs/epoll/max_user_watches"
    before = Path(path).read_text()
    text = spec_text(behaviour("x.attack", f"""
        params:
          flags: {{sampled_from: [{CONSTANTS['O_WRONLY'] | CONSTANTS['O_TRUNC']}]}}
        steps:
          - open_path: {{path: {path}, flags: $flags}}
            as: f
          - write: {{fd: $f, data: "1"}}
        """))
    outcome = run_one(text, {"flags": CONSTANTS["O_WRONLY"] | CONSTANTS["O_TRUNC"]})
    assert outcome.status == ERROR and "read only" in outcome.message
    assert Path(path).read_text() == before


def test_the_interfaces_the_specs_use_open_as_before():
    text = spec_text(behaviour("x.ok", """
        steps:
          - open_path: {path: /, flags: [O_RDONLY, O_DIRECTORY]}
          - open_path: {path: /dev/null, flags: O_RDWR}
            as: devnull
          - write: {fd: $devnull, data: discarded}
            expect: {returns: 9}
          - open_path: {path: /proc/sys/fs/epoll/max_user_watches}
            expect: {ok: true}
          - open_path: {path: /proc/thread-self/status}
            expect: {ok: true}
        """))
    assert run_one(text).status == CONFORMS


# -- the scratch directory ---------------------------------------------------------------------


SCRATCH_ROUND_TRIP = """
params:
  n: {integers: {min: 0, max: 1000}}
steps:
  - open_path: {path: "scratch:data", flags: [O_RDWR, O_CREAT, O_EXCL]}
    note: with O_EXCL, as every example starts with an empty directory
    as: w
  - write: {fd: $w, data: hello}
    expect: {returns: 5}
  - open_path: {path: "scratch:data"}
    as: r
  - read: {fd: $r, size: 16}
    expect: {matches: '^68656c6c6f$'}
  - open_path: {path: "scratch:", flags: [O_RDONLY, O_DIRECTORY]}
    expect: {ok: true}
"""


def test_a_spec_writes_and_reads_its_own_files_in_the_scratch_directory(no_leaks):
    outcome = run_one(spec_text(behaviour("x.scratch", SCRATCH_ROUND_TRIP)), {"n": 1})
    assert outcome.status == CONFORMS, outcome.trace()
    assert "scratch:data" in outcome.trace() and tempfile.gettempdir() not in outcome.trace()


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """The kit's temporary directory, private to this test, to see what is left in it."""
    where = tmp_path / "tmp"
    where.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(where))
    return where


def test_every_example_gets_a_fresh_directory_and_none_is_left_behind(private_tmp):
    from helpers import load_one

    verdict = check_isolated(load_one(spec_text(behaviour("x.scratch", SCRATCH_ROUND_TRIP))),
                             Target.current(), profile="quick")
    assert verdict.status == "conforms", verdict.message
    assert list(private_tmp.iterdir()) == []


@pytest.mark.parametrize("tail, status", [
    ("  - read: {fd: $f, size: 8}\n    expect: {returns: 99}\n", "deviates"),
    # the checker is killed at its limit (a kit error: a sleep step is the kit's own time)
    ("  - sleep: 5\n", "error"),
])
def test_the_scratch_directory_is_removed_when_the_behaviour_fails_or_is_killed(
        private_tmp, tail, status):
    from helpers import load_one

    text = spec_text(behaviour("x.scratch", "steps:\n  - open_path: {path: 'scratch:left', "
                                            "flags: [O_RDWR, O_CREAT]}\n    as: f\n" + tail))
    verdict = check_isolated(load_one(text), Target.current(), profile="quick", limit=2)
    assert verdict.status == status, verdict.message
    assert list(private_tmp.iterdir()) == []


SHARED_WITH_CHILD = """
steps:
  - in_child:
      steps:
        - open_path: {path: "scratch:from-child", flags: [O_WRONLY, O_CREAT]}
          as: w
        - write: {fd: $w, data: hi}
  - open_path: {path: "scratch:from-child"}
    as: r
  - read: {fd: $r, size: 8}
    expect: {matches: '^6869$'}
"""


@pytest.mark.parametrize("isolated", [True, False])
def test_an_in_child_step_shares_the_examples_scratch_directory(private_tmp, isolated):
    """The child makes the directory (on first use) and the parent finds it there."""
    text = spec_text(behaviour("x.scratch", SHARED_WITH_CHILD))
    if isolated:
        from helpers import load_one

        verdict = check_isolated(load_one(text), Target.current(), profile="quick")
        assert verdict.status == "conforms", verdict.message
    else:
        assert run_one(text).status == CONFORMS
    assert list(private_tmp.iterdir()) == []


def test_a_behaviour_that_opens_no_file_makes_no_directory(private_tmp):
    with scratch.behaviour_root() as root:
        assert run_one(spec_text(behaviour("x.plain", READS_COUNTER)), {"initval": 3}) \
            .status == CONFORMS
        assert os.listdir(root) == []


def test_a_scratch_path_outside_a_run_is_refused():
    with pytest.raises(confinement.Refused, match="no scratch directory"):
        files.open_path("scratch:x", os.O_RDONLY)


# -- descriptors and fcntl ---------------------------------------------------------------------


def test_a_descriptor_the_behaviour_did_not_create_is_refused(no_leaks):
    """The checker's result pipe, pytest's files: open descriptors a spec could name by
    number. Writing to one could forge a verdict."""
    rfd, wfd = os.pipe()
    try:
        text = spec_text(behaviour("x.attack", f"""
            params:
              victim: {{sampled_from: [{wfd}]}}
            steps:
              - write: {{fd: $victim, data: '{{"data": "forged"}}'}}
            """))
        outcome = run_one(text, {"victim": wfd})
        assert outcome.status == ERROR
        assert f"fd={wfd}: not a descriptor this behaviour created" in outcome.message
        os.set_blocking(rfd, False)
        with pytest.raises(BlockingIOError):
            os.read(rfd, 100)
    finally:
        os.close(rfd)
        os.close(wfd)


def test_descriptors_that_are_not_open_stay_usable_for_ebadf():
    text = spec_text(behaviour("x.ebadf", """
        params:
          bad: {sampled_from: [-1, 1000000, 2147483647]}
        steps:
          - eventfd: {}
            as: efd
          - close: {fd: $efd}
          - read_u64: {fd: $efd}
            expect: {errno: EBADF}
          - write_u64: {fd: $bad, value: 1}
            expect: {errno: EBADF}
        """))
    for bad in (-1, 1000000, 2147483647):
        assert run_one(text, {"bad": bad}).status == CONFORMS


def test_an_in_child_step_may_use_the_parents_descriptors():
    text = spec_text(behaviour("x.child", """
        steps:
          - eventfd: {flags: EFD_NONBLOCK}
            as: efd
          - in_child:
              steps:
                - write_u64: {fd: $efd, value: 5}
          - read_u64: {fd: $efd}
            expect: {value: 5}
        """))
    assert run_one(text).status == CONFORMS


# F_SETOWN, F_SETOWN_EX and F_SETSIG signal other processes; F_GETLK reads a pointer
@pytest.mark.parametrize("cmd", [8, 15, 10, 5])
def test_fcntl_commands_that_reach_other_processes_or_pointers_are_refused(cmd):
    steps = "steps:\n  - eventfd: {}\n    as: efd\n  - fcntl: {fd: $efd, cmd: CMD, arg: 1}\n"
    literal = spec_text(behaviour("x.attack", steps.replace("CMD", str(cmd))))
    _refused_at_load(literal, "steps[1].fcntl.cmd", needle="fcntl")
    computed = spec_text(behaviour("x.attack", f"params:\n  cmd: {{sampled_from: [{cmd}]}}\n"
                                               + steps.replace("CMD", "$cmd")))
    outcome = run_one(computed, {"cmd": cmd})
    assert outcome.status == ERROR and "fcntl command" in outcome.message


# FIONBIO and FIONREAD read a pointer; TIOCSTI (0x5412) pushes input into a terminal
@pytest.mark.parametrize("request_", [0x5421, 0x541B, 0x5412])
def test_ioctl_requests_beyond_the_descriptors_own_flag_are_refused(request_):
    steps = "steps:\n  - eventfd: {}\n    as: efd\n  - ioctl: {fd: $efd, request: REQ}\n"
    literal = spec_text(behaviour("x.attack", steps.replace("REQ", str(request_))))
    assert "ioctl request" in _refused_at_load(literal, "steps[1].ioctl.request",
                                               needle="ioctl")
    computed = spec_text(behaviour("x.attack", f"params:\n  req: {{sampled_from: [{request_}]}}\n"
                                               + steps.replace("REQ", "$req")))
    outcome = run_one(computed, {"req": request_})
    assert outcome.status == ERROR and "ioctl request" in outcome.message


# -- the specs as shipped -----------------------------------------------------------------------


def test_every_shipped_spec_loads_under_confinement():
    from helpers import REPO

    from kit.spec.loader import load_tree

    errors = [str(e) for loaded in load_tree(REPO / "specs") for e in loaded.errors]
    assert errors == []
