"""ioctl_eventpoll(2) as the specs use it: EPIOCSPARAMS / EPIOCGPARAMS reach only an epoll
fd, a field that does not fit its C type is the spec's mistake (never truncated), a
wrong expectation or a kernel without busy poll makes the shipped behaviours deviate, and
`applies: without_kernel_config` decides where the EOPNOTSUPP behaviour runs."""

from __future__ import annotations

import pytest
from helpers import REPO, behaviour, line_of, load, run_one, spec_text

from kit.engine import kernel_config
from kit.engine.interpreter import CONFORMS, DEVIATES, ERROR
from kit.engine.runner import check_behaviour
from kit.engine.target import Target, not_applicable_reason
from kit.spec.loader import load_file

pytestmark = pytest.mark.skipif(
    not Target.current().in_range(">=6.9"), reason="EPIOCSPARAMS is Linux 6.9")

# this kernel's own answer, read before any test points KIT_KERNEL_CONFIG elsewhere
REAL_BUSY_POLL = kernel_config.find().enabled("CONFIG_NET_RX_BUSY_POLL")


def shipped(bid: str):
    [b] = [b for b in load_file(REPO / "specs" / "epoll" / "ioctl.yaml").behaviours
           if b.id == bid]
    return b


@pytest.fixture
def kconfig(tmp_path, monkeypatch):
    def use(text: str):
        path = tmp_path / "config-test"
        path.write_text(text)
        monkeypatch.setenv(kernel_config.ENV, str(path))
        kernel_config.reset()
        return path
    kernel_config.reset()
    yield use
    kernel_config.reset()


def test_the_params_requests_are_refused_on_a_descriptor_that_is_not_an_epoll_fd():
    text = spec_text(behaviour("x.attack", """
        steps:
          - eventfd: {}
            as: efd
          - epoll_params_get: {fd: $efd}
        """))
    outcome = run_one(text)
    assert outcome.status == ERROR
    assert "refused: EPIOCGPARAMS on fd" in outcome.message
    assert "(anon_inode:[eventfd]): only on an epoll fd" in outcome.message


def test_the_generic_ioctl_operation_still_refuses_the_epoll_requests():
    text = spec_text(behaviour("x.attack", """
        steps:
          - epoll_create1: {}
            as: ep
          - ioctl: {fd: $ep, request: EPIOCSPARAMS}
        """))
    [error] = load(text).errors
    assert (error.behaviour, error.field) == ("x.attack", "steps[1].ioctl.request")
    assert error.line == line_of(text, "ioctl:")


def test_a_field_that_does_not_fit_its_type_is_an_error_of_the_spec_not_a_kernel_answer():
    text = spec_text(behaviour("x.params", """
        steps:
          - epoll_create1: {}
            as: ep
          - epoll_params_set: {fd: $ep, busy_poll_budget: 65536}
            expect: {errno: EINVAL}
        """))
    outcome = run_one(text)
    assert outcome.status == ERROR
    assert "refused: busy_poll_budget=65536 does not fit the struct's u16" in outcome.message
    assert outcome.message.startswith(f"line {line_of(text, 'busy_poll_budget')}:")


def test_a_wrong_round_trip_expectation_deviates_naming_the_field():
    text = spec_text(behaviour("x.params", """
        steps:
          - epoll_create1: {}
            as: ep
          - epoll_params_set: {fd: $ep, busy_poll_usecs: 25, busy_poll_budget: 8}
          - epoll_params_get: {fd: $ep}
            expect: {fields: {busy_poll_budget: 9}}
        """))
    outcome = run_one(text)
    assert outcome.status == DEVIATES
    assert "busy_poll_budget" in outcome.message and "9" in outcome.message


@pytest.mark.skipif(REAL_BUSY_POLL is False, reason="this kernel really lacks busy poll")
def test_without_busy_poll_in_the_config_the_eopnotsupp_behaviour_runs_and_this_kernel_deviates(
        kconfig):
    """A config that lacks CONFIG_NET_RX_BUSY_POLL, on a kernel built with it: the kernel
    answers 0 where such a kernel would answer EOPNOTSUPP, so the behaviour can fail."""
    kconfig("CONFIG_EPOLL=y\n# CONFIG_NET_RX_BUSY_POLL is not set\n")
    b = shipped("epoll.ioctl.eopnotsupp_without_busy_poll")
    target = Target.current()
    assert not_applicable_reason(b, target) is None
    verdict = check_behaviour(b, target)
    assert verdict.status == "deviates"
    assert "epoll_params_set" in verdict.message and "EOPNOTSUPP" in verdict.message


def test_with_busy_poll_in_the_config_the_eopnotsupp_behaviour_is_not_applicable(kconfig):
    path = kconfig("CONFIG_EPOLL=y\nCONFIG_NET_RX_BUSY_POLL=y\n")
    b = shipped("epoll.ioctl.eopnotsupp_without_busy_poll")
    verdict = check_behaviour(b, Target.current())
    assert verdict.status == "not applicable"
    assert verdict.message == f"kernel built with CONFIG_NET_RX_BUSY_POLL (from {path})"


def test_without_kernel_config_takes_only_config_symbols():
    text = spec_text(behaviour("x.kconfig", """
        applies:
          without_kernel_config: [NET_RX_BUSY_POLL]
        steps:
          - eventfd: {}
        """))
    [error] = load(text).errors
    assert error.behaviour == "x.kconfig"
    assert error.field.startswith("applies.without_kernel_config")


def test_the_unknown_request_behaviour_deviates_on_a_kernel_judged_older_than_6_9(monkeypatch):
    """Judged as 6.8, the kernel's EINVAL is not the ENOTTY an epoll fd without an ioctl
    handler gave: the version gate is what keeps the behaviour right on both."""
    monkeypatch.setenv("KIT_KERNEL_VERSION", "6.8")
    verdict = check_behaviour(shipped("epoll.ioctl.unknown_request_einval"), Target.current())
    assert verdict.status == "deviates"
    assert "ENOTTY" in verdict.message and "EINVAL" in verdict.message
    monkeypatch.delenv("KIT_KERNEL_VERSION")
    assert check_behaviour(shipped("epoll.ioctl.unknown_request_einval"),
                           Target.current()).status == CONFORMS


REAL_PM_SLEEP = kernel_config.find().enabled("CONFIG_PM_SLEEP")


def _block_suspend(bid: str):
    [b] = [b for b in load_file(REPO / "specs" / "epoll" / "block_suspend.yaml").behaviours
           if b.id == bid]
    return b


@pytest.mark.skipif(REAL_PM_SLEEP is not False, reason="needs a kernel without CONFIG_PM_SLEEP")
@pytest.mark.skipif(not Target.current().has_capability("CAP_BLOCK_SUSPEND"),
                    reason="needs CAP_BLOCK_SUSPEND")
def test_a_config_claiming_pm_sleep_makes_the_kept_wakeup_behaviour_deviate_here(kconfig):
    """This kernel drops EPOLLWAKEUP for everyone; judged as a kernel with CONFIG_PM_SLEEP,
    the behaviour that expects the flag kept runs and deviates, naming the exact mask."""
    kconfig("CONFIG_EPOLL=y\nCONFIG_PM_SLEEP=y\n")
    verdict = check_behaviour(_block_suspend("epoll.ctl.wakeup_kept_with_capability"),
                              Target.current())
    assert verdict.status == "deviates"
    assert "expected field events 0x20000019 (536870937), got 25" in verdict.message
    dropped = check_behaviour(_block_suspend("epoll.ctl.wakeup_dropped_without_pm_sleep"),
                              Target.current())
    assert dropped.status == "not applicable"
