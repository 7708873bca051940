"""The pytest plugin: every behaviour in specs/ is a pytest item.

    spec file --(kit.spec.loader)--> Behaviour --(kit.engine.runner)--> Verdict
              --> pytest outcome, and (kit.report) report.json, report.md, junit.xml

Items are named by behaviour id, so -k, -x, -n (xdist) and --timeout work as usual.
A deviation or timeout fails the item, a known deviation is an xfail, "not applicable"
and "untestable" are skips with their reason.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from kit.adapter import watchdog
from kit.engine import interpreter as interp
from kit.engine import machine_wide
from kit.engine.patch_level import BadKernelVersion
from kit.engine.runner import (
    DEFAULT_LIMIT,
    PROFILES,
    check_isolated,
    check_with_leak_check,
    explain,
)
from kit.engine.target import ALLOW_MACHINE_WIDE_ENV, Target
from kit.replay import BadParams, parse_params, replay_problem
from kit.spec.errors import SpecError
from kit.spec.loader import duplicate_error, load_file
from kit.spec.model import Behaviour
from kit.verdict import Verdict

USER_PROPERTY = "kit-verdict"


def pytest_addoption(parser):
    group = parser.getgroup("kit", "syscall conformance kit")
    group.addoption("--kit-report", metavar="DIR", default=None,
                    help="write report.json, report.md, report.html and junit.xml into DIR "
                         "(a run that stops early writes into DIR/partial/ instead when DIR "
                         "holds a complete report)")
    group.addoption("--kit-bench", metavar="FILE", default=None,
                    help="benchmark figures (bench.json of `kit bench`) to put in this "
                         "run's report")
    group.addoption("--kit-profile", choices=sorted(PROFILES), default="quick",
                    help="how hard to search: examples per behaviour (default: quick)")
    group.addoption("--kit-seed", type=int, default=0,
                    help="seed for example generation, recorded in the report (default: 0)")
    group.addoption("--kit-step-bound", type=float, default=interp.DEFAULT_BOUND,
                    metavar="SECONDS", help="how long one call may block before it is a "
                                            "timeout (default: %(default)s)")
    group.addoption("--kit-params", default=None, metavar="JSON",
                    help="run each selected behaviour once with exactly these parameters")
    group.addoption("--kit-specs", action="append", default=[], metavar="DIR",
                    help="also collect YAML specs under DIR (directories named specs/ "
                         "always are)")
    group.addoption("--kit-id", default=None, metavar="ID",
                    help="run only the behaviour with exactly this id")
    group.addoption("--kit-limit", type=float, default=DEFAULT_LIMIT, metavar="SECONDS",
                    help="hard limit for one behaviour, all examples (default: %(default)s)")
    group.addoption("--allow-machine-wide", action="store_true",
                    help="run behaviours that change a sysctl (`machine_wide:`), each "
                         "restored afterwards: only where the machine is the kit's own")
    group.addoption("--kit-in-process", action="store_true",
                    help="check behaviours in the pytest process instead of a forked child "
                         "(for debuggers; a hang or crash then takes the run down)")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    watchdog.install()
    config.addinivalue_line("markers", "kit: a conformance behaviour from specs/")
    config.addinivalue_line("markers", "family(name): the syscall family of a behaviour")
    if config.getoption("allow_machine_wide"):
        os.environ[ALLOW_MACHINE_WIDE_ENV] = "1"     # the forked checkers see it too
    if not hasattr(config, "workerinput"):
        # journals of a run killed while it held a sysctl changed: put the values back
        for name, value in machine_wide.restore_leftovers():
            print(f"kit: {name} restored to {value} (journal of a run that was killed)",
                  file=sys.stderr)
    try:
        config.kit_target = Target.current()
    except BadKernelVersion as exc:
        raise pytest.UsageError(str(exc)) from None
    params = config.getoption("kit_params")
    try:
        config.kit_params = parse_params(params) if params is not None else None
    except BadParams as exc:
        raise pytest.UsageError(str(exc)) from None
    config.kit_started = time.time()
    config.kit_warm = False
    if not hasattr(config, "workerinput"):
        collector = VerdictCollector(config)
        config.pluginmanager.register(collector, "kit-verdicts")
        collector.open_report_dir()


def pytest_unconfigure(config):
    collector = config.pluginmanager.get_plugin("kit-verdicts")
    if collector is not None:
        collector.close()


def pytest_collect_file(file_path: Path, parent):
    if file_path.suffix not in (".yaml", ".yml"):
        return None
    roots = [Path(r).resolve() for r in parent.config.getoption("kit_specs")]
    if "specs" in file_path.parts or any(r == file_path or r in file_path.resolve().parents
                                         for r in roots):
        return SpecFile.from_parent(parent, path=file_path)
    return None


@pytest.hookimpl(tryfirst=True)  # before -k deselects: a duplicate is one wherever it is
def pytest_collection_modifyitems(config, items):
    _refuse_duplicate_ids(items)
    if getattr(config.option, "numprocesses", None):
        # Spread over workers, the long behaviours go first: xdist hands items out in
        # order as workers free up, so none is left to run alone at the end (every
        # worker sorts alike, so they agree on the order). Verdicts do not depend on it.
        items.sort(key=lambda item: -_expected_cost(item))
    wanted = config.getoption("kit_id")
    if wanted is None:
        return
    keep = [i for i in items if getattr(i, "behaviour_id", None) == wanted]
    config.hook.pytest_deselected(items=[i for i in items if i not in keep])
    items[:] = keep


_LONG_STEPS = {"repeat": 3, "waiters": 2, "in_child": 1, "in_thread": 1}


def _expected_cost(item) -> int:
    """A rough rank of how long a behaviour takes: model programs and race loops longest,
    then groups of waiters, forked children and threads (which wait for each other)."""
    behaviour = getattr(item, "behaviour", None)
    if behaviour is None:
        return 0
    if behaviour.model:
        return 4

    def cost(steps) -> int:
        return max((max(_LONG_STEPS.get(s.action, 0), cost(s.substeps))
                    for s in steps), default=0)

    return cost(behaviour.steps)


def _refuse_duplicate_ids(items) -> None:
    """An id defined in two files: the later item becomes an error naming the first place
    (duplicates within one file are refused by the loader already)."""
    first: dict[str, Behaviour] = {}
    for i, item in enumerate(items):
        if not isinstance(item, BehaviourItem):
            continue
        earlier = first.setdefault(item.behaviour.id, item.behaviour)
        if earlier is not item.behaviour:
            error = duplicate_error(item.behaviour, earlier)
            items[i] = SpecErrorItem.from_parent(item.parent, name=f"{error.behaviour}"
                                                 f"[line-{error.line}]", error=error)


def pytest_collection_finish(session):
    """--kit-params is checked against every selected behaviour before anything runs."""
    params = session.config.kit_params
    if params is None:
        return
    for item in session.items:
        if isinstance(item, BehaviourItem):
            problem = replay_problem(item.behaviour, params)
            if problem:
                raise pytest.UsageError(f"--kit-params for {item.behaviour.id}: {problem}")


class SpecFile(pytest.File):
    def collect(self):
        loaded = load_file(self.path)
        for behaviour in loaded.behaviours:
            yield BehaviourItem.from_parent(self, name=behaviour.id, behaviour=behaviour)
        for error in loaded.errors:
            # Never the bare id: a duplicate id would share the first one's node id.
            name = f"{error.behaviour or 'spec-error'}[line-{error.line}]"
            yield SpecErrorItem.from_parent(self, name=name, error=error)


class KitError(Exception):
    """The kit itself misbehaved (a leak, a crash): never blamed on the kernel."""


class _Reported(Exception):
    """A deviation or timeout, already explained by its verdict."""


class SpecErrorItem(pytest.Item):
    """A malformed spec: reported as an error of its own; the other specs still run."""

    def __init__(self, *, error: SpecError, **kw):
        super().__init__(**kw)
        self.error = error
        self.behaviour_id = error.behaviour
        self.add_marker("kit")

    def runtest(self):
        verdict = Verdict(id=self.error.behaviour or self.name, title="(spec error)",
                          family=Path(self.error.file).parent.name, file=self.error.file,
                          line=self.error.line, cite={}, status="error",
                          message=str(self.error), nodeid=self.nodeid)
        self.user_properties.append((USER_PROPERTY, json.dumps(verdict.as_dict())))
        raise self.error

    def repr_failure(self, excinfo, style=None):
        return f"spec error: {excinfo.value}"

    def reportinfo(self):
        return self.path, self.error.line - 1, f"spec error in {self.error.behaviour or 'file'}"


class BehaviourItem(pytest.Item):
    def __init__(self, *, behaviour: Behaviour, **kw):
        super().__init__(**kw)
        self.behaviour = behaviour
        self.behaviour_id = behaviour.id
        self.add_marker("kit")
        self.add_marker(pytest.mark.family(behaviour.family))

    def reportinfo(self):
        # Not the id itself: pytest would shorten a node id that ends with it.
        return self.path, self.behaviour.line - 1, f"behaviour {self.behaviour.id}"

    def runtest(self):
        config = self.config
        options = dict(profile=config.getoption("kit_profile"),
                       run_seed=config.getoption("kit_seed"),
                       bound=config.getoption("kit_step_bound"),
                       params=config.kit_params,
                       nodeid=self.nodeid)
        if not config.kit_warm:  # once per process, before the first fork
            from kit.engine.warmup import warm_up

            warm_up()
            config.kit_warm = True
        if config.getoption("kit_in_process"):
            verdict = check_with_leak_check(self.behaviour, config.kit_target, **options)
        else:
            verdict = check_isolated(self.behaviour, config.kit_target,
                                     limit=config.getoption("kit_limit"), **options)
        self.user_properties.append((USER_PROPERTY, json.dumps(verdict.as_dict())))
        self._outcome(verdict)

    def _outcome(self, verdict: Verdict) -> None:
        if verdict.status in ("not applicable", "untestable"):
            pytest.skip(f"{verdict.status}: {verdict.message}")
        if verdict.status in ("deviates", "timeout") and verdict.known_deviation:
            pytest.xfail(f"known deviation: {verdict.known_deviation}")
        if verdict.status in ("deviates", "timeout"):
            raise _Reported(explain(verdict))
        if verdict.status == "error":
            raise KitError(explain(verdict) if verdict.trace else verdict.message)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, _Reported):
            return str(excinfo.value)
        if isinstance(excinfo.value, KitError):
            return f"kit error in {self.behaviour.id}:\n{excinfo.value}"
        return super().repr_failure(excinfo, style=style)


def _coverage(verdicts) -> dict:
    """The man-page coverage of this run's behaviours for the report; a machine without
    the pages (or any other failure here) costs the report's coverage section, not the run."""
    try:
        from kit.coverage.compute import compute, default_data_dir, quotes_of_verdicts, summary

        return summary(compute(quotes_of_verdicts(list(verdicts)), default_data_dir(),
                               whole_set=False))
    except Exception as exc:  # noqa: BLE001
        return {"error": f"{type(exc).__name__}: {exc}"}


def _is_spec(nodeid: str) -> bool:
    return nodeid.split("::", 1)[0].endswith((".yaml", ".yml")) and "::" in nodeid


# -- collecting verdicts (on the xdist controller, or the only process) --------------------


class VerdictCollector:
    """Gathers verdicts from test reports (xdist ships user_properties back to the
    controller) and writes the report set once, at the end of the session.

    The report directory is checked and locked at configure time, before anything runs.
    The set is staged and swapped in whole (kit.report.reportset). A run that did not
    check everything it selected (Ctrl-C, SIGTERM, -x, a session timeout) is marked
    partial; it goes into DIR/partial/ when DIR holds a complete report, which is kept.
    """

    def __init__(self, config):
        self.config = config
        self.verdicts: dict[str, dict] = {}
        self.selected: set[str] = set()
        self.written: list[Path] = []
        self.report_dir: Path | None = None
        self.lock = self.staging = None
        self.partial: dict | None = None
        self.kept: Path | None = None        # the complete report a partial run left alone
        self.write_error: str | None = None
        self.terminated = self.interrupted = self.stopped_on_failure = False
        self.run_id: str | None = None
        self._sigterm_before = None

    # -- before the run --------------------------------------------------------------------

    def open_report_dir(self) -> None:
        from kit.report.directory import ReportDirError, ReportLock, check_report_dir
        from kit.report.reportset import Staging, recover

        option = self.config.getoption("kit_report")
        if not option:
            return
        try:
            self.report_dir = check_report_dir(option)
            self.lock = ReportLock(self.report_dir).acquire()
        except ReportDirError as exc:
            raise pytest.UsageError(str(exc)) from None
        recover(self.report_dir)
        self.staging = Staging(self.report_dir)
        self.run_id = uuid.uuid4().hex[:12]
        if not self.config.option.xmlpath:
            self.config.option.xmlpath = str(self.staging.path / "junit.xml")
        self._catch_sigterm()

    def _catch_sigterm(self) -> None:
        """SIGTERM (CI cancelling a job, `timeout`) ends the session like Ctrl-C does, so
        the verdicts gathered so far are written, marked partial."""
        if threading.current_thread() is not threading.main_thread():
            return
        owner = os.getpid()

        def terminate(signum, frame):
            if os.getpid() != owner:   # a forked checker inherited this: die as asked
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
                return
            self.terminated = True
            raise KeyboardInterrupt("SIGTERM")

        before = signal.signal(signal.SIGTERM, terminate)
        # None: the handler was not set from Python; the default is what to go back to.
        self._sigterm_before = signal.SIG_DFL if before is None else before

    def _restore_sigterm(self) -> None:
        if self._sigterm_before is not None:
            signal.signal(signal.SIGTERM, self._sigterm_before)
            self._sigterm_before = None

    def close(self) -> None:
        self._restore_sigterm()
        if self.staging is not None:
            self.staging.discard()
            self.staging = None
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    # -- during the run --------------------------------------------------------------------

    def pytest_collection_finish(self, session):
        self.selected.update(i.nodeid for i in session.items if _is_spec(i.nodeid))

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node, ids):
        self.selected.update(i for i in ids if _is_spec(i))

    def pytest_runtest_logreport(self, report):
        props = dict(report.user_properties)
        if USER_PROPERTY in props and (report.when == "call" or report.skipped):
            self.verdicts[report.nodeid] = json.loads(props[USER_PROPERTY])
        elif report.failed and report.nodeid not in self.verdicts and _is_spec(report.nodeid):
            # A crash (a lost xdist worker, a setup error) still gets its line in the report.
            path = report.nodeid.split("::", 1)[0]
            self.verdicts[report.nodeid] = Verdict(
                id=report.nodeid.rsplit("::", 1)[-1], title="(the kit crashed)",
                family=Path(path).parent.name, file=path, line=0, cite={}, status="error",
                nodeid=report.nodeid, duration=round(report.duration, 4),
                message=f"kit crash: {str(report.longrepr)[-2000:]}").as_dict()

    # -- after the run ---------------------------------------------------------------------

    def _why_partial(self, session, exitstatus) -> str | None:
        if self.terminated:
            self.interrupted = True
            return "terminated by SIGTERM"
        dsession = self.config.pluginmanager.get_plugin("dsession")
        stop = session.shouldfail or session.shouldstop or getattr(dsession, "shouldstop",
                                                                   False)
        if isinstance(stop, str) and "keyboard-interrupt" not in stop:
            maxfail = self.config.option.maxfail
            if stop.startswith("stopping after") and maxfail:
                self.stopped_on_failure = True
                return ("stopped at the first failure (-x)" if maxfail == 1
                        else f"stopped after {maxfail} failures (--maxfail)")
            return f"stopped early: {stop}"
        if exitstatus == pytest.ExitCode.INTERRUPTED:
            self.interrupted = True
            return "interrupted (Ctrl-C)"
        if self.selected - self.verdicts.keys():
            return "some selected behaviours did not run"
        return None

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_sessionfinish(self, session, exitstatus):
        # A wrapper, innermost: it runs after junit.xml is written (and sees its failure),
        # and before the terminal summary reports what was written.
        self._restore_sigterm()   # a SIGTERM now kills outright; the previous set stays
        junit_error = None
        try:
            yield
        except OSError as exc:
            junit_error = exc
        if self.staging is None:
            return
        why = self._why_partial(session, session.exitstatus)
        if why:
            self.partial = {"reason": why, "not_run": sorted(
                n.rsplit("::", 1)[-1] for n in self.selected - self.verdicts.keys())}
        if not self.verdicts:
            return   # nothing was checked: the previous report stays as it was
        try:
            if junit_error:
                raise junit_error
            self._write()
        except OSError as exc:
            self.written = []
            self.write_error = (f"could not write the report into {self.report_dir}: "
                                f"{exc.strerror or exc}"
                                + (f" ({exc.filename})" if exc.filename else "")
                                + "; the previous report was kept")
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
        finally:
            self.staging.discard()
            self.staging = None

    def _write(self) -> None:
        from kit.report import build_report, stage_reports
        from kit.report.reportset import PARTIAL_DIR, complete_report_in

        bench_file = self.config.getoption("kit_bench")
        bench = json.loads(Path(bench_file).read_text()) if bench_file else None
        report = build_report(
            list(self.verdicts.values()), self.config.kit_target,
            started=self.config.kit_started, profile=self.config.getoption("kit_profile"),
            seed=self.config.getoption("kit_seed"), run_id=self.run_id,
            partial=self.partial, bench=bench, coverage=_coverage(self.verdicts.values()))
        stage_reports(self.staging, report)
        if self.partial and complete_report_in(self.report_dir):
            self.kept = self.report_dir
            self.written = self.staging.commit(PARTIAL_DIR)
        else:
            drop = () if self.partial else (PARTIAL_DIR,)
            self.written = self.staging.commit(".", drop=drop)

    def outcome(self) -> dict:
        """What the CLI needs to pick its exit code and summary."""
        return {"verdicts": list(self.verdicts.values()), "partial": self.partial,
                "interrupted": self.interrupted, "stopped_on_failure": self.stopped_on_failure,
                "written_dir": str(self.written[0].parent) if self.written else None,
                "kept": str(self.kept) if self.kept else None,
                "write_error": self.write_error}

    def pytest_terminal_summary(self, terminalreporter, exitstatus, config):
        tr = terminalreporter
        if self.verdicts:
            self._summary(tr, config)
        if self.partial:
            tr.line(f"PARTIAL RUN: {self.partial['reason']}; "
                    f"{len(self.partial['not_run'])} selected behaviour(s) were not run",
                    yellow=True, bold=True)
            if self.kept:
                tr.line(f"the complete report in {self.kept} was kept; this run's partial "
                        f"report is in {self.kept / 'partial'}", yellow=True)
        if self.report_dir and not self.verdicts:
            tr.line(f"nothing was checked: the report in {self.report_dir} was left as it was")
        if self.write_error:
            tr.line(f"kit: {self.write_error}", red=True, bold=True)
        for path in self.written:
            tr.line(f"report written: {path}")

    def _summary(self, tr, config) -> None:
        from kit.report.summary import basis_of, by_basis, status_counts
        from kit.report.target_text import kernel_text

        tr.section("conformance summary")
        target = config.kit_target
        tr.line(f"kernel {kernel_text(target.describe())} ({target.arch}, {target.libc})")
        verdicts = list(self.verdicts.values())
        tr.line("  ".join(f"{status}: {n}" for status, n in status_counts(verdicts).items()))
        implementation = by_basis(verdicts).get("implementation")
        if implementation:
            tr.line("of which implementation behaviour (Linux beyond its man pages): "
                    + "  ".join(f"{status}: {n}" for status, n in implementation.items()))
        for v in verdicts:
            if v["status"] in ("deviates", "timeout", "error"):
                known = " (known)" if v.get("known_deviation") else ""
                known += " [implementation]" if basis_of(v) == "implementation" else ""
                tr.line(f"  {v['status']}{known}: {v['id']}: {v.get('message', '')[:160]}")
                if v.get("known_deviation"):
                    tr.line(f"    known deviation: {v['known_deviation']}")
                for gate in v.get("gates", []):   # why, and since when
                    tr.line(f"    kernel change: {gate}")
            elif v.get("fixed"):
                tr.line(f"  fixed: {v['id']}: {v['fixed'][:160]}")
        defects = [v for v in verdicts if v.get("documentation_defect")]
        if defects:
            tr.line(f"documentation defects (the kernel conforms to its side): {len(defects)}")
            for v in defects:
                d = v["documentation_defect"]
                tr.line(f"  documentation defect: {v['id']}: the page says {d['claim']}; "
                        f"the kernel {d['kernel_does']}")
        if config.getoption("kit_params") is not None:
            # A replay: show the whole trace, whatever the verdict.
            from kit.engine.runner import explain

            for v in verdicts:
                tr.line(explain(v))
