"""`applies: kernel_config`: where the target's kernel config comes from, what a behaviour that
needs an option becomes when the option is unset, set, or the config is unknown, and the
loader's errors for bad values."""

from __future__ import annotations

import gzip

import pytest
from helpers import behaviour, line_of, load, load_one, spec_text

from kit.engine import kernel_config
from kit.engine.runner import check_behaviour
from kit.engine.target import Target, not_applicable_reason

CONFIG = """\
#
# Automatically generated file; DO NOT EDIT.
# Linux/x86 6.1.0 Kernel Configuration
#
CONFIG_EVENTFD=y
CONFIG_CHECKPOINT_RESTORE=y
# CONFIG_KCMP is not set
# CONFIG_AIO is not set
CONFIG_9P_FS=m
CONFIG_LOCALVERSION=""
CONFIG_HZ=250
"""


def needs(*entries: str, bid: str = "x.kconfig.needs") -> str:
    """A one-behaviour spec whose applies.kernel_config is `entries` (YAML flow items)."""
    return spec_text(behaviour(bid, f"""
        applies:
          kernel_config: [{", ".join(entries)}]
        steps:
          - eventfd: {{}}
            as: efd
          - close: {{fd: $efd}}
    """))


@pytest.fixture
def config_env(tmp_path, monkeypatch):
    """Point KIT_KERNEL_CONFIG at a file with CONFIG's text (gzip-compressed if asked), with
    the per-process cache emptied before and after."""
    def use(text: str = CONFIG, name: str = "config-6.1.0-test", gz: bool = False):
        path = tmp_path / name
        path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
        monkeypatch.setenv(kernel_config.ENV, str(path))
        kernel_config.reset()
        return path
    kernel_config.reset()
    yield use
    kernel_config.reset()


@pytest.fixture
def no_config(tmp_path, monkeypatch):
    """No KIT_KERNEL_CONFIG, and neither /proc/config.gz nor /boot/config-* exist."""
    monkeypatch.delenv(kernel_config.ENV, raising=False)
    monkeypatch.setattr(kernel_config, "PROC", str(tmp_path / "proc-config.gz"))
    monkeypatch.setattr(kernel_config, "BOOT", str(tmp_path / "boot-config-{release}"))
    kernel_config.reset()
    yield
    kernel_config.reset()


# -- reading a config -------------------------------------------------------------------------


def test_parse_reads_set_and_not_set_lines():
    values, unset = kernel_config.parse(CONFIG)
    assert values == {"CONFIG_EVENTFD": "y", "CONFIG_CHECKPOINT_RESTORE": "y",
                      "CONFIG_9P_FS": "m", "CONFIG_LOCALVERSION": '""', "CONFIG_HZ": "250"}
    assert unset == {"CONFIG_KCMP", "CONFIG_AIO"}


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_the_file_named_by_the_environment_is_read_plain_or_gzip(config_env, gz):
    path = config_env(gz=gz, name="config.gz" if gz else "config")
    config = kernel_config.current()
    assert config.source == str(path)
    assert config.enabled("CONFIG_CHECKPOINT_RESTORE") is True
    assert config.enabled("CONFIG_9P_FS") is True              # a module counts
    assert config.enabled("CONFIG_KCMP") is False              # "is not set"
    assert config.enabled("CONFIG_NOT_IN_THE_FILE") is False   # absent: not set either
    assert Target.current().describe()["kernel_config"].startswith(str(path))


def test_the_config_is_read_once_per_process_until_reset(config_env, tmp_path):
    path = config_env()
    first = kernel_config.current()
    path.write_text("CONFIG_KCMP=y\n")
    assert kernel_config.current() is first                    # cached
    kernel_config.reset()
    assert kernel_config.current().enabled("CONFIG_KCMP") is True


def test_without_the_environment_proc_comes_before_boot(no_config, tmp_path, monkeypatch):
    boot = tmp_path / "boot-config-6.1.0-test"
    boot.write_text("CONFIG_AIO=y\n")
    found = kernel_config.find(release="6.1.0-test")
    assert found.source == str(boot)
    proc = tmp_path / "proc-config.gz"
    proc.write_bytes(gzip.compress(b"# CONFIG_AIO is not set\n"))
    found = kernel_config.find(release="6.1.0-test")
    assert found.source == str(proc) and found.enabled("CONFIG_AIO") is False


def test_a_named_file_that_cannot_be_read_is_reported_not_replaced(config_env, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setenv(kernel_config.ENV, str(tmp_path / "missing"))
    config = kernel_config.find()
    assert not config.known
    assert f"{kernel_config.ENV}={tmp_path / 'missing'}" in config.describe()
    junk = tmp_path / "junk"
    junk.write_text("not a config\n")
    monkeypatch.setenv(kernel_config.ENV, str(junk))
    assert "not a kernel config" in kernel_config.find().describe()


# -- applicability ----------------------------------------------------------------------------


def test_an_unset_option_makes_the_behaviour_not_applicable_naming_option_and_file(config_env):
    path = config_env()
    b = load_one(needs("CONFIG_EVENTFD", "CONFIG_KCMP"))
    target = Target.current()
    reason = not_applicable_reason(b, target)
    assert reason == f"kernel built without CONFIG_KCMP (from {path})"
    verdict = check_behaviour(b, target)
    assert verdict.status == "not applicable" and verdict.message == reason


def test_an_option_the_file_does_not_mention_is_unset(config_env):
    path = config_env()
    b = load_one(needs("CONFIG_USERFAULTFD"))
    assert not_applicable_reason(b, Target.current()) == \
        f"kernel built without CONFIG_USERFAULTFD (from {path})"


def test_set_options_apply_and_the_behaviour_runs(config_env):
    config_env()
    b = load_one(needs("CONFIG_EVENTFD", "CONFIG_9P_FS"))
    target = Target.current()
    assert not_applicable_reason(b, target) is None
    assert check_behaviour(b, target).status == "conforms"


def test_any_of_holds_when_one_alternative_is_set(config_env):
    path = config_env()
    either = "{any: [CONFIG_KCMP, CONFIG_CHECKPOINT_RESTORE]}"
    assert not_applicable_reason(load_one(needs(either)), Target.current()) is None
    neither = "{any: [CONFIG_KCMP, CONFIG_AIO]}"
    assert not_applicable_reason(load_one(needs(neither)), Target.current()) == \
        f"kernel built without CONFIG_KCMP or CONFIG_AIO (from {path})"


def test_with_no_config_found_the_behaviour_runs_and_the_target_says_so(no_config):
    config = kernel_config.current()
    assert not config.known
    target = Target.current()
    described = target.describe()["kernel_config"]
    assert described.startswith("none found") and "proc-config.gz" in described
    assert "run regardless" in described
    b = load_one(needs("CONFIG_KCMP"))
    assert not_applicable_reason(b, target) is None
    assert check_behaviour(b, target).status == "conforms"


def test_a_target_built_by_hand_has_an_unknown_config():
    now = Target.current()
    old = Target(release="4.19.0-1-amd64", version_string="", arch=now.arch,
                 capabilities=now.capabilities, libc=now.libc)
    assert not old.config.known
    assert not_applicable_reason(load_one(needs("CONFIG_KCMP")), old) is None


# -- the loader -------------------------------------------------------------------------------


def test_the_loader_keeps_each_entry_as_its_alternatives():
    b = load_one(needs("CONFIG_AIO", "{any: [CONFIG_KCMP, CONFIG_CHECKPOINT_RESTORE]}"))
    assert b.applies.kernel_config == (("CONFIG_AIO",),
                                       ("CONFIG_KCMP", "CONFIG_CHECKPOINT_RESTORE"))


@pytest.mark.parametrize("value, field, got", [
    ("CONFIG_KCMP", "applies.kernel_config", "got 'CONFIG_KCMP'"),
    ("[KCMP]", "applies.kernel_config[0]", "got 'KCMP'"),
    ("[CONFIG_AIO, config_kcmp]", "applies.kernel_config[1]", "got 'config_kcmp'"),
    ("[]", "applies.kernel_config", "got []"),
    ("[{any: [CONFIG_KCMP]}]", "applies.kernel_config[0].any", "got ['CONFIG_KCMP']"),
    ("[{all: [CONFIG_A, CONFIG_B]}]", "applies.kernel_config[0]", "got {'all'"),
], ids=["not a list", "no CONFIG_ prefix", "lower case", "empty", "any of one", "not any"])
def test_bad_values_are_spec_errors_naming_the_field(value, field, got):
    text = spec_text(behaviour("x.kconfig.bad", f"""
        applies:
          kernel_config: {value}
        steps:
          - eventfd: {{}}
    """))
    result = load(text)
    assert result.behaviours == []
    (error,) = result.errors
    assert error.behaviour == "x.kconfig.bad" and error.field == field
    assert error.file == "specs/x/t.yaml" and error.line == line_of(text, "kernel_config:")
    assert "kernel_config is a list of kernel options" in error.message and got in error.message
