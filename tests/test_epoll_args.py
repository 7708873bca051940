"""The adapter arguments behind epoll's argument specs: a sigmask the kernel cannot read
(`fault: sigmask`), the raw calls' `sigsetsize`, and a handler with SA_RESTART
(`signal_install {restart: true}`), each on the real kernel, with the message a spec
author sees when one is misused."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from helpers import behaviour, run_one, spec_text

from kit.adapter import epoll, eventfd, fds, libc, signals
from kit.engine.interpreter import CONFORMS, DEVIATES
from kit.registry import CONSTANTS

HAS_PWAIT2 = epoll.arch.syscall_number("epoll_pwait2") is not None


@pytest.fixture
def ready_epoll():
    """An epoll fd with one eventfd that is readable (data 1); both closed afterwards."""
    ep = epoll.epoll_create1(0).ret
    efd = eventfd.eventfd(1, 0).ret
    try:
        assert epoll.epoll_ctl(ep, CONSTANTS["EPOLL_CTL_ADD"], efd, 0x1, 1).ok
        yield ep
    finally:
        os.close(efd)
        os.close(ep)


WAITS = [epoll.epoll_pwait] + ([epoll.epoll_pwait2] if HAS_PWAIT2 else [])


@pytest.mark.parametrize("wait", WAITS, ids=lambda w: w.__name__)
def test_an_unreadable_sigmask_is_efault_even_with_an_event_ready(ready_epoll, wait):
    res = wait(ready_epoll, 4, 0, fault="sigmask")
    assert (res.ret, res.errno) == (-1, "EFAULT")
    assert wait(ready_epoll, 4, 0, sigmask="").value == {1: 0x1}


@pytest.mark.parametrize("wait", WAITS, ids=lambda w: w.__name__)
def test_sigsetsize_other_than_the_kernels_is_einval_only_with_a_mask(ready_epoll, wait):
    assert wait(ready_epoll, 4, 0, sigmask="", sigsetsize=4).errno == "EINVAL"
    assert wait(ready_epoll, 4, 0, sigmask="", sigsetsize=8).value == {1: 0x1}
    # with a NULL mask the kernel never looks at the size
    assert wait(ready_epoll, 4, 0, sigsetsize=4).value == {1: 0x1}


@pytest.mark.parametrize("wait", WAITS, ids=lambda w: w.__name__)
def test_an_unknown_fault_is_refused_naming_the_argument(ready_epoll, wait):
    res = wait(ready_epoll, 4, 0, fault="events")
    assert (res.errno, res.value) == ("EINVAL", "`fault` is sigmask")


def test_the_inaccessible_page_is_mapped_once_and_unreadable_by_the_kernel():
    page = libc.inaccessible_page()
    assert page == libc.inaccessible_page() and page != libc.readonly_page()
    r, w = os.pipe()
    try:
        os.write(w, b"x")
        # read(2) into it must fault: the kernel may not write there either
        assert libc.call(libc.libc.read, r, page, 1).errno == "EFAULT"
    finally:
        os.close(r)
        os.close(w)


def _interrupted_read(restart: bool) -> libc.Result:
    """A blocking read(2) of an eventfd in the main thread, hit by SIGUSR1 and then fed by a
    write 0.1 s later: restarted under SA_RESTART (returns 8), else EINTR."""
    efd = eventfd.eventfd(0, 0).ret
    main = threading.main_thread().ident

    def poke():
        time.sleep(0.1)
        signal.pthread_kill(main, signal.SIGUSR1)
        time.sleep(0.1)
        os.write(efd, (1).to_bytes(8, "little"))

    assert signals.signal_install(signal.SIGUSR1, restart=restart).ok
    thread = threading.Thread(target=poke)
    thread.start()
    try:
        return fds.read_u64(efd)
    finally:
        thread.join(5)
        signals.signal_restore(signal.SIGUSR1)
        os.close(efd)


def test_signal_install_with_restart_sets_sa_restart_and_restore_clears_it():
    assert _interrupted_read(restart=True).value == 1
    assert _interrupted_read(restart=False).errno == "EINTR"
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL


NEVER_RESTARTED = """
steps:
  - epoll_create1: {}
    as: ep
  - in_child:
      steps:
        - signal_install: {signum: SIGUSR1, restart: true}
        - in_thread:
            when_blocked: true
            after: 0.05
            steps:
              - signal_thread: {signum: SIGUSR1, to: main}
          as: sender
        - epoll_pwait: {epfd: $ep, maxevents: 4, timeout: -1, sigmask: ""}
          within: 5
          expect: {EXPECT}
        - join: sender
        - signal_restore: {signum: SIGUSR1}
"""


def test_a_spec_sees_eintr_under_sa_restart_and_a_wrong_expectation_says_so():
    right = spec_text(behaviour("t.restart", NEVER_RESTARTED.replace("{EXPECT}",
                                                                     "{errno: EINTR}")))
    assert run_one(right).status == CONFORMS
    wrong = spec_text(behaviour("t.restart", NEVER_RESTARTED.replace("{EXPECT}",
                                                                     "{returns: 0}")))
    outcome = run_one(wrong)
    assert outcome.status == DEVIATES
    assert "EINTR" in outcome.message and "epoll_pwait" in outcome.message


def test_a_spec_with_an_unknown_fault_fails_with_the_adapters_reason():
    text = spec_text(behaviour("t.fault", """
steps:
  - epoll_create1: {}
    as: ep
  - epoll_pwait: {epfd: $ep, maxevents: 4, timeout: 0, fault: events}
    expect: {errno: EFAULT}
"""))
    outcome = run_one(text)
    assert outcome.status == DEVIATES
    assert "failed with EINVAL" in outcome.message
    # the adapter's reason travels with the step's result (report and replay show it)
    assert outcome.records[-1].result["value"] == "`fault` is sigmask"
