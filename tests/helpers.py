"""Helpers for the kit's own tests (imported by conftest.py and the test modules).

Everything here runs against the real kernel: specs are written into tmp_path, loaded with
kit.spec.loader and run with kit.engine.interpreter.Run (fast, in-process), or through the
pytest plugin / the `kit` command in a subprocess where the plugin or the CLI is under test.

Spec text is built with `behaviour()` and `spec_text()`; tests locate lines with `line_of()`
instead of hard-coding numbers, so an edit to a helper never silently shifts an assertion.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from kit.adapter import watchdog
from kit.engine.interpreter import Outcome, Run
from kit.engine.target import Target
from kit.spec.loader import LoadResult, load_text
from kit.spec.model import Behaviour

REPO = Path(__file__).resolve().parent.parent
QUOTE = "a sentence the man page really says"
CITE = f'{{page: eventfd(2), section: DESCRIPTION, quote: "{QUOTE}"}}'
SUBPROCESS_TIMEOUT = 120
# Subprocesses share a bytecode cache outside the repository: with PYTHONDONTWRITEBYTECODE
# set, every inner pytest would otherwise re-rewrite (assertion rewriting) all of Hypothesis.
PYCACHE = os.path.join(tempfile.gettempdir(), f"kit-tests-pycache-{os.getuid()}")


# -- building spec text ---------------------------------------------------------------------


def behaviour(bid: str, body: str = "", *, title: str | None = None, cite: str = CITE) -> str:
    """One entry of a `behaviours:` list; `body` is YAML at column 0 (steps:, params:, ...)."""
    head = f"  - id: {bid}\n    title: {title or 'Behaviour ' + bid}\n    cite: {cite}\n"
    body = textwrap.dedent(body).strip("\n")
    return head + (textwrap.indent(body, "    ") + "\n" if body else "")


# Bodies for behaviour(): a read returns the initial counter (conforms), and the same read
# expected one too high (a deliberate deviation).
READS_COUNTER = """
params:
  initval: {integers: {min: 1, max: 100}}
steps:
  - eventfd: {initval: $initval, flags: EFD_NONBLOCK}
    as: efd
  - read_u64: {fd: $efd}
    expect: {value: $initval}
"""
READS_COUNTER_WRONG = READS_COUNTER.replace("{value: $initval}",
                                            "{value: {add: [$initval, 1]}}")


def spec_text(*behaviours: str, family: str | None = None) -> str:
    top = f"family: {family}\n" if family else ""
    return top + "behaviours:\n" + "".join(behaviours)


def line_of(text: str, needle: str, nth: int = 1, after: int = 0) -> int:
    """1-based line of the nth line (after line `after`) containing `needle`."""
    hits = [i for i, line in enumerate(text.splitlines(), 1) if needle in line and i > after]
    assert len(hits) >= nth, f"{needle!r} occurs {len(hits)} times in the spec text"
    return hits[nth - 1]


def write_spec(root: Path, text: str, name: str = "t.yaml", family: str = "x") -> Path:
    """Write a spec file under ROOT/specs/FAMILY/ (the plugin collects only under specs/)."""
    path = root / "specs" / family / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def load(text: str, file: str = "specs/x/t.yaml") -> LoadResult:
    return load_text(text, file)


def load_one(text: str) -> Behaviour:
    result = load(text)
    assert not result.errors, [str(e) for e in result.errors]
    assert len(result.behaviours) == 1
    return result.behaviours[0]


def run_one(text: str, params: dict | None = None, bound: float = 2.0,
            target: Target | None = None) -> Outcome:
    """Load a one-behaviour spec and run one example of it on the real kernel."""
    assert watchdog.installed(), "the watchdog is not installed: a blocking call could hang"
    return Run(load_one(text), target or Target.current(), params or {}, bound).outcome()


# -- running the plugin and the CLI in a subprocess -----------------------------------------


def _env() -> dict:
    env = dict(os.environ)
    for key in list(env):
        # An outer xdist worker or pytest run must not leak into the inner one.
        if key.startswith(("PYTEST_", "HYPOTHESIS_")):
            env.pop(key)
    env.pop("KIT_PLATFORM", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = PYCACHE
    return env


class Ran:
    """A finished subprocess: exit code, output, and the report it wrote (if any)."""

    def __init__(self, proc: subprocess.CompletedProcess, report_dir: Path | None):
        self.ret, self.stdout, self.stderr = proc.returncode, proc.stdout, proc.stderr
        self.report_dir = report_dir

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def report(self) -> dict:
        path = self.report_dir / "report.json"
        assert path.exists(), f"no report.json in {self.report_dir}:\n{self.output}"
        return json.loads(path.read_text())

    def verdicts(self) -> dict[str, dict]:
        return {b["id"]: b for b in self.report["behaviours"]}

    def statuses(self) -> dict[str, str]:
        return {b["id"]: b["status"] for b in self.report["behaviours"]}


def run_python(args: list[str], cwd: Path, *, report_dir: Path | None = None,
               env: dict | None = None, timeout: float = SUBPROCESS_TIMEOUT) -> Ran:
    proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env or _env(), check=False)
    return Ran(proc, report_dir)


def run_plugin(root: Path, *args: str, report: bool = True, env: dict | None = None) -> Ran:
    """pytest -p kit.plugin on ROOT/specs (in a subprocess), report into ROOT/report-N."""
    report_dir = None
    extra: list[str] = []
    if report:
        n = len(list(root.glob("report-*")))
        report_dir = root / f"report-{n}"
        extra = ["--kit-report", str(report_dir)]
    return run_python(["-m", "pytest", "-p", "kit.plugin", "-p", "no:cacheprovider",
                       "-p", "no:randomly", "--rootdir", str(root), "-rsx", *extra, *args,
                       str(root / "specs")], cwd=root, report_dir=report_dir, env=env)


def run_kit(root: Path, *args: str, report_dir: Path | None = None) -> Ran:
    return run_python(["-m", "kit", *args], cwd=root, report_dir=report_dir)




# An LD_PRELOAD library whose read(2) on an eventfd never returns (pause() again after
# every signal), or with -DINTERRUPTIBLE returns EINTR once interrupted: a target that hangs.
HANG_SHIM_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

ssize_t read(int fd, void *buf, size_t count) {
    static ssize_t (*real)(int, void *, size_t);
    char path[64], link[64];
    if (!real) real = (ssize_t (*)(int, void *, size_t))dlsym(RTLD_NEXT, "read");
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, link, sizeof link - 1);
    if (n > 0) {
        link[n] = 0;
        if (strcmp(link, "anon_inode:[eventfd]") == 0) {
#ifdef INTERRUPTIBLE
            pause();
            errno = EINTR;
            return -1;
#else
            for (;;) pause();
#endif
        }
    }
    return real(fd, buf, count);
}
"""


def build_hang_shim(cc: str, out: Path, interruptible: bool = False) -> Path:
    name = "interruptible" if interruptible else "forever"
    (out / "hang.c").write_text(HANG_SHIM_C)
    built = out / f"{name}.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O1",
                    *(["-DINTERRUPTIBLE"] if interruptible else []), "-o", str(built),
                    str(out / "hang.c"), "-ldl"], check=True, timeout=120)
    return built


def boot_and_run(target_file: Path, out: Path):
    """Prepare a VM target from its file (the user's real cache: downloads once) and run
    `-k "eventfd and create"` in it as `kit matrix` would: (target, result, its report).
    Skips with the target's reason where this machine cannot run it."""
    from kit.matrix.base import RunRequest
    from kit.matrix.targets import load_target, target_env

    target = load_target(target_file)
    target.repo = REPO
    reason = target.unavailable()
    if reason:
        pytest.skip(reason)
    log = out.parent / f"{out.name}.log"
    target.prepare(log)
    result = target.run(RunRequest(repo=REPO, out_dir=out, kit_args=["-k", "eventfd and create"],
                                   timeout=1800, log=log, env=target_env(target)))
    assert result.status == "ran", f"{result.reason}\n{log.read_text()[-3000:]}"
    assert result.exit_code in (0, 1)
    return target, result, json.loads(result.report.read_text())
