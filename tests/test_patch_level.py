"""The kernel's real patch level (kit/engine/patch_level.py): Debian's `uname -v`, Ubuntu's
/proc/version_signature, `uname -r` for everyone else, and a target's override before them
all; where the version came from is in every report; and a version gate on a stable
backport is decided by the real version, not by the ABI name in `uname -r`."""

from __future__ import annotations

import mmap
import re
from pathlib import Path

import pytest
from helpers import _env, behaviour, run_kit, run_python, spec_text, write_spec

from kit.engine.patch_level import (
    ENV,
    BadKernelVersion,
    override_from_env,
    read_signature,
    resolve,
)
from kit.engine.runner import check_behaviour
from kit.engine.target import Target
from kit.matrix import qemu_kernel
from kit.matrix.runner import render_matrix_markdown
from kit.matrix.targets import target_env
from kit.matrix.targets import TargetFileError, load_target
from kit.report.html import render_html
from kit.report.markdown import render_markdown
from kit.report.target_text import kernel_text
from kit.spec.loader import load_text

UBUNTU_V = "#101-Ubuntu SMP Tue Nov 14 13:30:08 UTC 2023"


# -- reading each form ------------------------------------------------------------------------


@pytest.mark.parametrize("release, uname_v, signature, version, source", [
    # Debian bullseye: the ABI name hides 5.10.262
    ("5.10.0-46-amd64", "#1 SMP Debian 5.10.262-1 (2025-11-01)", "", "5.10.262",
     "uname -v (Debian)"),
    # the prepared Debian kernels of targets/debian-6.1.yaml and debian-6.12.yaml, as their
    # vmlinux banners read
    ("6.1.0-57-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (2026-11-26)", "", "6.1.192",
     "uname -v (Debian)"),
    ("6.12.118+deb12-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.12.118-1~deb12u1 (2026-11-28)",
     "", "6.12.118", "uname -v (Debian)"),
    # a backport, and a source version with an epoch (Raspberry Pi OS)
    ("6.1.0-0.deb11.17-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.69-1~bpo11+1 (2024-01-05)",
     "", "6.1.69", "uname -v (Debian)"),
    ("6.6.51+rpt-rpi-v8", "#1 SMP PREEMPT Debian 1:6.6.51-1+rpt3 (2024-10-08)", "", "6.6.51",
     "uname -v (Debian)"),
    # Ubuntu: its uname -v has no upstream version; /proc/version_signature does
    ("5.15.0-91-generic", UBUNTU_V, "Ubuntu 5.15.0-91.101-generic 5.15.131", "5.15.131",
     "/proc/version_signature (Ubuntu)"),
    ("6.8.0-40-generic", UBUNTU_V, "Ubuntu 6.8.0-40.40~22.04.3-generic 6.8.12", "6.8.12",
     "/proc/version_signature (Ubuntu)"),
    # anyone else: the release's own numbers
    ("6.18.44-fc-v1252", "#1 SMP PREEMPT_DYNAMIC @0", "", "6.18.44", "uname -r"),
    ("6.5.6-300.fc39.x86_64", "#1 SMP PREEMPT_DYNAMIC Fri Oct  6 19:57:21 UTC 2023", "",
     "6.5.6", "uname -r"),
    ("5.10.0-46-amd64", "", "", "5.10.0", "uname -r"),
])
def test_each_form_gives_the_upstream_version_and_says_where_from(release, uname_v,
                                                                   signature, version, source):
    level = resolve(release, uname_v, signature)
    assert (str(level.version), level.source) == (version, source)


def test_a_distribution_version_of_another_series_is_not_this_kernels():
    """A version text naming 6.1 on a kernel that calls itself 5.10 describes some other
    kernel: the release stands rather than a guess across series."""
    assert resolve("5.10.0-46-amd64", "#1 SMP Debian 6.1.192-3 (2026-11-26)").source == \
        "uname -r"
    assert str(resolve("5.15.0-91-generic", UBUNTU_V,
                       "Ubuntu 6.8.0-40.40-generic 6.8.12").version) == "5.15.0"


def test_an_unreadable_signature_is_no_signature(tmp_path):
    assert read_signature(str(tmp_path / "absent")) == ""
    (tmp_path / "sig").write_text("Ubuntu 5.15.0-91.101-generic 5.15.131\nnoise\n")
    assert read_signature(str(tmp_path / "sig")) == "Ubuntu 5.15.0-91.101-generic 5.15.131"


# -- precedence --------------------------------------------------------------------------------


def test_the_override_comes_first_then_the_signature_then_debian_then_the_release():
    debian = "#1 SMP Debian 5.10.262-1 (2025-11-01)"
    ubuntu = "Ubuntu 5.10.0-46.51-generic 5.10.250"
    assert resolve("5.10.0-46-amd64", debian, ubuntu, "5.10.1").source == "target override"
    assert str(resolve("5.10.0-46-amd64", debian, ubuntu, "5.10.1").version) == "5.10.1"
    assert str(resolve("5.10.0-46-amd64", debian, ubuntu).version) == "5.10.250"
    assert str(resolve("5.10.0-46-amd64", debian).version) == "5.10.262"
    assert str(resolve("5.10.0-46-amd64").version) == "5.10.0"


def test_the_environment_override_and_its_older_name():
    assert override_from_env({ENV: "5.10.262"}) == ("5.10.262", ENV)
    assert override_from_env({"KIT_ASSUME_KERNEL": "6.18"}) == ("6.18", "KIT_ASSUME_KERNEL")
    assert override_from_env({ENV: "6.1.192", "KIT_ASSUME_KERNEL": "6.18"})[0] == "6.1.192"
    assert override_from_env({}) == ("", "")


@pytest.mark.parametrize("bad", ["banana", "5.10.0-46-amd64", "5", "v6.1", "6.1.2.3"])
def test_a_bad_override_is_refused_naming_the_variable(bad):
    with pytest.raises(BadKernelVersion, match=rf"^{ENV}: '{re.escape(bad)}' is not a "
                                               r"kernel version \(MAJOR\.MINOR or "):
        override_from_env({ENV: bad})


def test_target_current_reads_the_override_and_reports_its_source(monkeypatch):
    monkeypatch.setenv(ENV, "5.10.262")
    described = Target.current().describe()
    assert described["kernel"] == "5.10.262" and described["kernel_source"] == "target override"
    assert described["kernel_override"] == "5.10.262"
    monkeypatch.delenv(ENV)
    monkeypatch.setenv("KIT_ASSUME_KERNEL", "6.18")     # gVisor's, as older kits set it
    assert Target.current().describe()["kernel"] == "6.18"


# -- a version gate decided by the real version -----------------------------------------------

# epoll.edge.et_pipe_new_data_new_event's gate (specs/epoll/edge.yaml), written out here so
# this test does not follow edits to that spec: Debian's 5.10.262 carries the 5.10.56 fix.
PIPE_EDGE = spec_text(behaviour("x.patch.pipe_edge", """
steps:
  - epoll_create1: {}
    as: ep
  - pipe2: {flags: O_NONBLOCK}
    as: pipe
  - epoll_ctl: {epfd: $ep, op: EPOLL_CTL_ADD, fd: $pipe.read, events: [EPOLLIN, EPOLLET], data: 1}
  - write: {fd: $pipe.write, data: "a"}
  - epoll_wait: {epfd: $ep, timeout: 0}
    expect: {returns: 1}
  - write: {fd: $pipe.write, data: "b"}
  - epoll_wait: {epfd: $ep, timeout: 0}
    expect: {returns: 1, fields: {1: EPOLLIN}}
    differs:
      - kernel: ">=5.5,<5.10.56"
        expect: {returns: 0}
        reason: "pipe writes woke readers only on an empty pipe until 3a34b13a88ca (5.10.56)"
"""))


def _debian_5_10(uname_v: str) -> Target:
    now = Target.current()
    return Target(release="5.10.0-46-amd64", version_string=uname_v, arch=now.arch,
                  capabilities=now.capabilities, libc=now.libc)


def test_a_backported_fix_is_judged_by_debians_real_version():
    """This kernel wakes the reader on every pipe write, as 5.10.56 and later do. Described
    as Debian's 5.10.262 it conforms by the default rule; judged by uname -r alone (5.10.0)
    the pre-fix variant applied and this very kernel behaviour was a false deviation."""
    loaded = load_text(PIPE_EDGE, "specs/x/patch.yaml")
    assert not loaded.errors
    b = loaded.behaviours[0]
    real = check_behaviour(b, _debian_5_10("#1 SMP Debian 5.10.262-1 (2025-11-01)"))
    assert real.status == "conforms", real.message
    assert real.variants == []
    by_release = check_behaviour(b, _debian_5_10("#1 SMP Debian"))   # no version in it
    assert by_release.status == "deviates"
    assert "expected a return of 0" in by_release.message
    assert by_release.variants and "<5.10.56" in by_release.variants[0]


# -- the reports show where the version came from ----------------------------------------------


CONFORMS = spec_text(behaviour("x.patch.counter", """
steps:
  - eventfd: {initval: 3, flags: EFD_NONBLOCK}
    as: efd
  - read_u64: {fd: $efd}
    expect: {value: 3}
"""))


def test_kit_run_with_an_override_says_so_in_every_report(tmp_path):
    write_spec(tmp_path, CONFORMS)
    out = tmp_path / "out"
    ran = run_python(["-m", "kit", "run", "--specs", str(tmp_path / "specs"), "--report",
                      str(out), "-n", "0"], cwd=tmp_path, report_dir=out,
                     env=dict(_env(), **{ENV: "5.10.262"}))
    assert ran.ret == 0, ran.output
    target = ran.report["target"]
    assert (target["kernel"], target["kernel_source"]) == ("5.10.262", "target override")
    said = "judged as 5.10.262 from target override"
    assert said in (out / "report.md").read_text()
    assert said in (out / "report.html").read_text()
    assert said in ran.output          # the terminal summary


def test_kit_run_without_an_override_names_the_kernels_own_source(tmp_path):
    write_spec(tmp_path, CONFORMS)
    out = tmp_path / "out"
    ran = run_kit(tmp_path, "run", "--specs", str(tmp_path / "specs"), "--report", str(out),
                  "-n", "0", report_dir=out)
    assert ran.ret == 0, ran.output
    now = Target.current().patch_level
    assert ran.report["target"]["kernel_source"] == now.source
    assert f"judged as {now.version} from {now.source}" in (out / "report.md").read_text()


def test_kit_run_with_a_bad_override_is_a_usage_error_naming_it(tmp_path):
    write_spec(tmp_path, CONFORMS)
    ran = run_python(["-m", "kit", "run", "--specs", str(tmp_path / "specs"), "--report",
                      str(tmp_path / "out"), "-n", "0"], cwd=tmp_path,
                     env=dict(_env(), **{ENV: "5.10.0-46-amd64"}))
    assert ran.ret == 3, ran.output
    assert f"{ENV}: '5.10.0-46-amd64' is not a kernel version" in ran.output
    assert not (tmp_path / "out" / "report.json").exists()


def _report(target: dict) -> dict:
    return {"target": target, "kit_version": "0", "behaviours": [],
            "run": {"profile": "quick", "seed": 0, "duration": 0},
            "summary": {"statuses": {}, "families": {}, "conformance": None}}


DEBIAN_TARGET = {"name": "debian-6.1", "release": "6.1.0-57-amd64",
                 "version_string": "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (2026-11-26)",
                 "arch": "x86_64", "libc": "glibc 2.36", "platform": "qemu",
                 "kernel": "6.1.192", "kernel_source": "uname -v (Debian)"}


def test_the_writers_show_the_release_the_version_and_its_source():
    said = "6.1.0-57-amd64, judged as 6.1.192 from uname -v (Debian)"
    assert kernel_text(DEBIAN_TARGET) == said
    assert said in render_html([_report(DEBIAN_TARGET)])
    assert "- kernel version: judged as 6.1.192 from uname -v (Debian)" in \
        render_markdown(_report(DEBIAN_TARGET))
    matrix = {"targets": [{"name": "debian-6.1", "status": "ran", "reason": "",
                           "target": DEBIAN_TARGET, "metadata": {}}], "differences": []}
    assert f"| debian-6.1 | ran | {said} |" in render_matrix_markdown(matrix)


def test_a_report_from_an_older_kit_still_renders():
    """report.json written before `kernel_source` existed: the release, and gVisor's
    assume_kernel as it was."""
    old = {k: v for k, v in DEBIAN_TARGET.items() if k != "kernel_source"}
    assert kernel_text(old) == "6.1.0-57-amd64"
    assert "kernel 6.1.0-57-amd64" in render_html([_report(old)])
    gvisor = dict(old, release="4.4.0", assume_kernel="6.18")
    assert kernel_text(gvisor) == "4.4.0, judged as 6.18"


# -- matrix targets ----------------------------------------------------------------------------


def _target_file(tmp_path, extra: str):
    path = tmp_path / "t.yaml"
    path.write_text(f"name: t\nkind: host\ntimeout: 60\n{extra}")
    return path


@pytest.mark.parametrize("field", ["kernel_version", "assume_kernel"])
def test_a_target_field_sets_the_override_for_its_run(tmp_path, field):
    target = load_target(_target_file(tmp_path, f'{field}: "5.10.262"\n'))
    assert target_env(target)[ENV] == "5.10.262"


def test_the_shipped_targets_gvisor_keeps_its_version_and_debian_reads_its_own():
    targets = Path(__file__).resolve().parent.parent / "targets"
    assert target_env(load_target(targets / "gvisor.yaml"))[ENV] == "6.18"
    for name in ("debian-6.1.yaml", "debian-6.12.yaml", "host.yaml"):
        assert ENV not in target_env(load_target(targets / name))   # uname -v / -r tell


@pytest.mark.parametrize("extra, field, line, message", [
    ("kernel_version: 5.10\n", "kernel_version", 4,
     '5.1 is a number to YAML; quote the version ("5.10" unquoted reads as 5.1)'),
    ('assume_kernel: "4.4.0-generic"\n', "assume_kernel", 4,
     "'4.4.0-generic' is not a kernel version"),
    ('kernel_version: "6.18"\nassume_kernel: "6.18"\n', "assume_kernel", 5,
     "`assume_kernel` is the older name of `kernel_version`: give one of them"),
])
def test_a_bad_kernel_version_in_a_target_file_names_file_line_and_field(tmp_path, extra,
                                                                          field, line, message):
    path = _target_file(tmp_path, extra)
    with pytest.raises(TargetFileError) as caught:
        load_target(path)
    assert str(caught.value).startswith(f"{path}:{line}: field {field}: {message}")


def test_kit_matrix_exits_3_on_a_bad_kernel_version(tmp_path):
    (tmp_path / "targets").mkdir()
    _target_file(tmp_path / "targets", "kernel_version: 6.1\n")
    ran = run_kit(tmp_path, "matrix", "--targets", str(tmp_path / "targets"), "--list")
    assert ran.ret == 3, ran.output
    assert "field kernel_version: 6.1 is a number to YAML" in ran.output


# -- the prepared Debian kernels, when this machine has them ----------------------------------


def _banner_uname_v(vmlinux: str) -> str:
    """`uname -v` as the kernel will print it: the tail of its "Linux version" banner."""
    with open(vmlinux, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as m:
        start = m.find(b"Linux version ")
        assert start >= 0, f"no banner in {vmlinux}"
        line = m[start:m.find(b"\n", start)].decode()
    return line[line.index(" #") + 1:]


@pytest.mark.parametrize("pattern, upstream", [
    (r"linux-image-6\.1\.0-[0-9]+-amd64-unsigned", r"6\.1\.\d+"),
    (r"linux-image-6\.12\.[0-9]+\+deb12-amd64-unsigned", r"6\.12\.\d+"),
])
def test_the_debian_targets_kernels_tell_their_version_in_uname_v(pattern, upstream):
    """What the guest's kit will read, taken from the prepared kernel itself: no override is
    needed for targets/debian-*.yaml. Runs where `kit matrix` has prepared the kernels."""
    kernels = [k for k in qemu_kernel.cached_kernels(pattern) if k.vmlinux]
    if not kernels:
        pytest.skip(f"no prepared kernel matching {pattern} in {qemu_kernel.kernels_dir()}")
    for kernel in kernels:
        level = resolve(kernel.release, _banner_uname_v(kernel.vmlinux))
        assert level.source == "uname -v (Debian)", kernel.release
        # the package version (6.1.192-3) starts with the upstream one
        assert re.fullmatch(upstream, str(level.version))
        assert kernel.version.split("-")[0] == str(level.version), kernel.version
