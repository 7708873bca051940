"""The operations behind specs/epoll/kinds.yaml and the signalfd/timerfd process specs,
tried as a spec author (or a hostile one) would: mounts only in a private namespace of a
forked child and only on a directory in the scratch directory, pidfds only of the
behaviour's own children, reaped when the example ends. Each refusal is a spec error
naming file, line and field (a literal) or an error verdict (a computed value, or process
state only the run can see), never a deviation of the kernel."""

from __future__ import annotations

import os

import pytest
from helpers import behaviour, line_of, load, run_one, spec_text

from kit.adapter import pidfd
from kit.engine.interpreter import CONFORMS, DEVIATES, ERROR

CAN_MOUNT = os.geteuid() == 0


def _attack(body: str) -> str:
    return spec_text(behaviour("x.attack", body))


# -- mounts -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/tmp", "/", "scratch:a/b", "scratch:", "scratch:.."])
def test_a_mount_point_outside_the_scratch_directory_is_refused_when_the_spec_loads(path):
    text = _attack(f"steps:\n  - mount_tmpfs: {{path: '{path}'}}\n")
    result = load(text)
    assert result.behaviours == []
    [error] = result.errors
    assert (error.file, error.behaviour, error.field) == \
        ("specs/x/t.yaml", "x.attack", "steps[0].mount_tmpfs.path")
    assert error.line == line_of(text, "mount_tmpfs")
    assert "refused" in error.message


def test_a_mount_outside_a_private_namespace_is_an_error_and_mounts_nothing(private_mounts):
    """In a forked child that did not unshare, the mount would be the machine's."""
    text = _attack("""
        steps:
          - make_directory: {path: "scratch:mnt"}
          - in_child:
              steps:
                - mount_tmpfs: {path: "scratch:mnt"}
        """)
    outcome = run_one(text)
    assert outcome.status == ERROR
    assert "refused: mount_tmpfs only runs in a private mount namespace" in outcome.message
    assert private_mounts() == []


def test_the_kits_own_process_never_leaves_the_machines_mount_namespace(private_mounts):
    namespace = os.stat("/proc/self/ns/mnt").st_ino
    outcome = run_one(_attack("steps:\n  - mount_namespace_private: {}\n"))
    assert outcome.status == ERROR
    assert "refused: mount_namespace_private only runs in a forked child" in outcome.message
    assert os.stat("/proc/self/ns/mnt").st_ino == namespace


@pytest.mark.skipif(not CAN_MOUNT, reason="mounting needs root")
def test_a_mount_in_a_private_namespace_stays_there(private_mounts):
    """The child's tmpfs is seen in the child and never in the kit's namespace."""
    text = _attack("""
        steps:
          - make_directory: {path: "scratch:mnt"}
          - in_child:
              steps:
                - mount_namespace_private: {}
                - mount_tmpfs: {path: "scratch:mnt"}
                - open_path: {path: "scratch:mnt/inside", flags: [O_RDWR, O_CREAT]}
        """)
    outcome = run_one(text)
    assert outcome.status == CONFORMS, outcome.trace()
    assert private_mounts() == []


@pytest.fixture
def private_mounts():
    """A function listing the kit-scratch mounts in this process's namespace; none may
    exist before or after."""
    def listing() -> list[str]:
        with open("/proc/self/mounts") as table:
            return [line for line in table if "kit-scratch" in line]
    assert listing() == []
    yield listing
    assert listing() == []


# -- pidfds -------------------------------------------------------------------------------


def test_a_pidfd_of_a_process_the_behaviour_did_not_spawn_is_refused(no_leaks):
    text = _attack(f"""
        params:
          pid: {{sampled_from: [1, {os.getpid()}]}}
        steps:
          - pidfd_open: {{pid: $pid}}
        """)
    for pid in (1, os.getpid()):
        outcome = run_one(text, {"pid": pid})
        assert outcome.status == ERROR
        assert f"refused: pid {pid} is not a child this behaviour spawned" in outcome.message


def test_a_reaped_child_is_no_longer_the_behaviours(no_leaks):
    """Its pid may name another process by then."""
    text = _attack("""
        steps:
          - spawn_child: {}
            as: child
          - close: {fd: $child.release}
          - child_wait: {pid: $child.pid}
            expect: {fields: {exited: true, status: 0}}
          - pidfd_open: {pid: $child.pid}
        """)
    outcome = run_one(text)
    assert outcome.status == ERROR
    assert "is not a child this behaviour spawned" in outcome.message


def test_children_a_spec_leaves_running_are_reaped_when_the_example_ends(no_leaks):
    text = _attack("""
        steps:
          - spawn_child: {status: 3}
            as: child
          - pidfd_open: {pid: $child.pid}
            as: pidfd
          - fd_is_open: {fd: $child.release}
            expect: {value: false}
        """)
    outcome = run_one(text)
    assert outcome.status == DEVIATES        # the expectation is wrong on purpose
    assert pidfd._children == {}
    pid = outcome.records[0].result["value"]["pid"]
    with pytest.raises(ChildProcessError):   # reaped already: no zombie left
        os.waitpid(pid, os.WNOHANG)


# -- POSIX timers -------------------------------------------------------------------------


def test_posix_timers_are_made_only_in_a_forked_child(no_leaks):
    """The run tracks descriptors, not timers: one made in the kit's process would stay."""
    outcome = run_one(_attack("steps:\n  - posix_timer_create: {clockid: CLOCK_MONOTONIC}\n"))
    assert outcome.status == ERROR
    assert "refused: posix_timer_create only runs in a forked child" in outcome.message


def test_a_timer_the_behaviour_did_not_make_is_refused(no_leaks):
    outcome = run_one(_attack("""
        steps:
          - in_child:
              steps:
                - posix_timer_gettime: {timer: 1}
        """))
    assert outcome.status == ERROR
    assert "refused: timer 1 was not made by posix_timer_create" in outcome.message


# -- the processes these operations fork --------------------------------------------------


def test_a_probe_that_reads_nothing_makes_the_exec_behaviour_deviate(no_leaks):
    """A kernel that dropped pending signals at execve(2) is seen: here the signal is not
    blocked (so never pending), and the probe's value says what it found instead."""
    outcome = run_one(_attack("""
        steps:
          - in_child:
              steps:
                - signal_install: {signum: SIGUSR1}
                - exec_signal_probe: {mask: SIGUSR1}
                  expect: {fields: {count: 1, records: {fields: {0: {fields: {signo: SIGUSR1}}}}}}
        """))
    assert outcome.status == DEVIATES
    assert "expected field count 1, got 0" in outcome.message


def test_a_fault_that_did_not_kill_would_deviate_naming_the_signal(no_leaks):
    """The forked process dies of SIGSEGV; an expectation of anything else names what
    really ended it."""
    outcome = run_one(_attack("""
        steps:
          - fault_child: {}
            expect: {fields: {killed_by: SIGBUS}}
        """))
    assert outcome.status == DEVIATES
    assert "got 'SIGSEGV'" in outcome.message or "got SIGSEGV" in outcome.message
