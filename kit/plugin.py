"""The pytest plugin: every behaviour in specs/ is a pytest item run as a Hypothesis property.

    spec file --(loader)--> Behaviour --(strategies)--> params --(interpreter)--> Outcome
              --> Verdict --(report writers)--> report.json, report.md, junit.xml

Items are named by behaviour id, so -k, -x, -n (xdist) and --timeout work as usual.
"""

from __future__ import annotations

import json
import threading
import time
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, example, given, seed, settings

from kit.adapter import watchdog
from kit.adapter.proc import open_fds
from kit.engine import interpreter as interp
from kit.engine.target import Target, not_applicable_reason
from kit.spec.errors import SpecError
from kit.spec.loader import load_file, typed
from kit.spec.model import Behaviour
from kit.spec.strategies import behaviour_params
from kit.verdict import Verdict, replay_command

PROFILES = {
    # quick: CI on every commit; thorough: before a release.
    "quick": dict(max_examples=25),
    "default": dict(max_examples=60),
    "thorough": dict(max_examples=400),
}
for _name, _values in PROFILES.items():
    settings.register_profile(
        f"kit-{_name}", deadline=None, database=None, print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                               HealthCheck.differing_executors],
        **_values)

USER_PROPERTY = "kit-verdict"


def pytest_addoption(parser):
    group = parser.getgroup("kit", "syscall conformance kit")
    group.addoption("--kit-report", metavar="DIR", default=None,
                    help="write report.json, report.md and junit.xml into DIR")
    group.addoption("--kit-profile", choices=sorted(PROFILES), default="quick",
                    help="how hard to search: examples per behaviour (default: quick)")
    group.addoption("--kit-seed", type=int, default=0,
                    help="seed for example generation, recorded in the report (default: 0)")
    group.addoption("--kit-step-bound", type=float, default=interp.DEFAULT_BOUND,
                    metavar="SECONDS", help="how long one call may block before it is a "
                                            "timeout (default: %(default)s)")
    group.addoption("--kit-params", default=None, metavar="JSON",
                    help="run each selected behaviour once with exactly these parameters")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    watchdog.install()
    config.addinivalue_line("markers", "kit: a conformance behaviour from specs/")
    config.addinivalue_line("markers", "family(name): the syscall family of a behaviour")
    report_dir = config.getoption("kit_report")
    if report_dir and not config.option.xmlpath and not hasattr(config, "workerinput"):
        config.option.xmlpath = str(Path(report_dir) / "junit.xml")
    config.kit_target = Target.current()
    config.kit_started = time.time()
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(VerdictCollector(config), "kit-verdicts")


def pytest_collect_file(file_path: Path, parent):
    if file_path.suffix in (".yaml", ".yml") and "specs" in file_path.parts:
        return SpecFile.from_parent(parent, path=file_path)
    return None


class SpecFile(pytest.File):
    def collect(self):
        loaded = load_file(self.path)
        for behaviour in loaded.behaviours:
            yield BehaviourItem.from_parent(self, name=behaviour.id, behaviour=behaviour)
        for error in loaded.errors:
            name = error.behaviour or f"spec-error-line-{error.line}"
            yield SpecErrorItem.from_parent(self, name=name, error=error)


class SpecErrorItem(pytest.Item):
    """A malformed spec: reported as an error of its own; the other specs still run."""

    def __init__(self, *, error: SpecError, **kw):
        super().__init__(**kw)
        self.error = error
        self.add_marker("kit")

    def runtest(self):
        verdict = Verdict(id=self.error.behaviour or self.name, title="(spec error)",
                          family=Path(self.error.file).parent.name, file=self.error.file,
                          line=self.error.line, cite={}, status="error",
                          message=str(self.error), nodeid=self.nodeid)
        self.user_properties.append((USER_PROPERTY, json.dumps(verdict.as_dict())))
        raise self.error

    def repr_failure(self, excinfo):
        return f"spec error: {excinfo.value}"

    def reportinfo(self):
        return self.path, self.error.line - 1, f"spec error {self.name}"


class Deviation(Exception):
    """The kernel did not do what the spec says (raised from inside Hypothesis)."""

    def __init__(self, params: dict, outcome: interp.Outcome):
        super().__init__(outcome.message)
        self.params, self.outcome = params, outcome


class _Timeout(watchdog.TargetTimeout):
    def __init__(self, params: dict, outcome: interp.Outcome):
        super().__init__(outcome.message)
        self.params, self.outcome = params, outcome


def item_seed(behaviour_id: str, run_seed: int) -> int:
    return zlib.crc32(behaviour_id.encode()) ^ run_seed


class BehaviourItem(pytest.Item):
    def __init__(self, *, behaviour: Behaviour, **kw):
        super().__init__(**kw)
        self.behaviour = behaviour
        self.add_marker("kit")
        self.add_marker(pytest.mark.family(behaviour.family))
        self.verdict: Verdict | None = None

    def reportinfo(self):
        return self.path, self.behaviour.line - 1, self.behaviour.id

    # -- running ----------------------------------------------------------------------

    def runtest(self):
        started = time.monotonic()
        fds_before = open_fds()
        threads_before = set(threading.enumerate())
        try:
            self._run()
        finally:
            self._check_leaks(fds_before, threads_before)
            if self.verdict:
                self.verdict.duration = round(time.monotonic() - started, 4)
                self.user_properties.append((USER_PROPERTY, json.dumps(self.verdict.as_dict())))

    def _settle(self, status: str, **kw) -> Verdict:
        self.verdict = Verdict.of(self.behaviour, status, nodeid=self.nodeid, **kw)
        return self.verdict

    def _run(self):
        config = self.config
        b, target = self.behaviour, config.kit_target
        if b.untestable:
            self._settle("untestable", message=b.untestable)
            pytest.skip(f"untestable: {b.untestable}")
        reason = not_applicable_reason(b, target)
        if reason:
            self._settle("not applicable", message=reason)
            pytest.skip(f"not applicable: {reason}")
        fixed = config.getoption("kit_params")
        fixed = json.loads(fixed) if fixed is not None else None
        profile = settings.get_profile(f"kit-{config.getoption('kit_profile')}")
        run_seed = config.getoption("kit_seed")
        self._variants: set[str] = set()
        try:
            if b.model:
                self._run_model(fixed, profile, item_seed(b.id, run_seed))
            else:
                self._run_steps(fixed, profile, item_seed(b.id, run_seed))
        except (Deviation, _Timeout) as exc:
            params = typed(exc.params)
            status = exc.outcome.status
            known = self._known_deviation() if status == interp.DEVIATES else None
            self._settle(status, message=exc.outcome.message, counterexample=params,
                         trace=[r.as_dict() for r in exc.outcome.records],
                         variants=sorted(self._variants), known_deviation=known,
                         seed=run_seed, replay=replay_command(b.id, params))
            if known:
                pytest.xfail(f"known deviation: {known}")
            raise
        self._settle("conforms", variants=sorted(self._variants), seed=run_seed)

    def _run_steps(self, fixed: dict | None, profile, test_seed: int) -> None:
        b, target = self.behaviour, self.config.kit_target
        bound = self.config.getoption("kit_step_bound")

        def check(params):
            outcome = interp.Run(b, target, params, bound).outcome()
            self._variants.update(outcome.variants)
            if outcome.status == interp.TIMEOUT:
                raise _Timeout(params, outcome)
            if outcome.status != interp.CONFORMS:
                raise Deviation(params, outcome)

        if fixed is not None:
            check(fixed)
            return
        examples = min(profile.max_examples, b.max_examples or profile.max_examples)
        if not b.params:
            examples = 1
        test = given(behaviour_params(b))(check)
        for ex in reversed(b.examples):
            test = example(ex)(test)
        phases = tuple(profile.phases) if b.params else (Phase.explicit, Phase.generate)
        seed(test_seed)(settings(profile, max_examples=examples, phases=phases)(test))()

    def _run_model(self, fixed: dict | None, profile, test_seed: int) -> None:
        from hypothesis.stateful import run_state_machine_as_test

        from kit.model import load_machine, replayer
        from kit.model.program import ModelDisagreement

        b = self.behaviour
        if fixed is not None:
            outcome = replayer(b.model)(fixed["program"])
            if outcome.status != interp.CONFORMS:
                raise Deviation(fixed, outcome)
            return
        machine = seed(test_seed)(load_machine(b.model))
        examples = min(profile.max_examples, b.max_examples or profile.max_examples)
        try:
            run_state_machine_as_test(machine, settings=settings(
                profile, max_examples=examples, stateful_step_count=40))
        except ModelDisagreement as exc:
            raise Deviation({"program": exc.program}, exc.outcome) from None

    def _known_deviation(self) -> str | None:
        target = self.config.kit_target
        for dev in self.behaviour.known_deviations:
            if dev.platform and dev.platform != target.platform:
                continue
            if dev.kernel and not target.in_range(dev.kernel):
                continue
            return dev.reason
        return None

    def _check_leaks(self, fds_before: set[int], threads_before: set) -> None:
        leaked_fds = open_fds() - fds_before
        leaked_threads = [t.name for t in set(threading.enumerate()) - threads_before
                          if t.is_alive()]
        if not (leaked_fds or leaked_threads):
            return
        message = "the kit leaked " + "; ".join(filter(None, [
            f"descriptors {sorted(leaked_fds)}" if leaked_fds else "",
            f"threads {leaked_threads}" if leaked_threads else ""]))
        if self.verdict is None or self.verdict.status == "conforms":
            self._settle("error", message=message)
            raise KitError(message)

    # -- reporting --------------------------------------------------------------------

    def repr_failure(self, excinfo, style=None):
        exc = excinfo.value
        if isinstance(exc, (Deviation, _Timeout)):
            return self._explain(exc)
        if isinstance(exc, KitError):
            return f"kit error in {self.behaviour.id}: {exc}"
        return super().repr_failure(excinfo, style=style)

    def _explain(self, exc) -> str:
        b = self.behaviour
        verb = "timed out" if isinstance(exc, _Timeout) else "deviates"
        lines = [
            f"{b.id} {verb}: {b.title}",
            f"  documented in {b.cite.page}, {b.cite.section}:",
            f'    "{b.cite.quote}"',
            f"  spec: {b.file}:{b.line}",
            f"  counterexample: {json.dumps(typed(exc.params), sort_keys=True)}",
            "  trace:",
        ]
        lines += ["    " + line for r in exc.outcome.records for line in r.render().splitlines()]
        lines.append(f"  replay: {replay_command(b.id, typed(exc.params))}")
        return "\n".join(lines)


class KitError(Exception):
    """The kit itself misbehaved (a leak, a crash): never blamed on the kernel."""


# -- collecting verdicts (on the xdist controller, or the only process) --------------------


class VerdictCollector:
    """Gathers verdicts from test reports (xdist ships user_properties back to the
    controller) and writes the reports once, at the end of the session."""

    def __init__(self, config):
        self.config = config
        self.verdicts: dict[str, dict] = {}
        self.written: list[Path] = []

    def pytest_runtest_logreport(self, report):
        props = dict(report.user_properties)
        if USER_PROPERTY in props and (report.when == "call" or report.skipped):
            self.verdicts[report.nodeid] = json.loads(props[USER_PROPERTY])
        elif report.failed and report.nodeid not in self.verdicts and "::" in report.nodeid:
            # A crash (a lost xdist worker, a setup error) still gets its line in the report.
            self.verdicts[report.nodeid] = {
                "id": report.nodeid.rsplit("::", 1)[-1], "title": "", "family": "",
                "file": report.fspath, "line": 0, "cite": {}, "status": "error",
                "nodeid": report.nodeid, "message": str(report.longrepr)[-2000:],
                "trace": [], "variants": []}

    def pytest_sessionfinish(self, session, exitstatus):
        report_dir = self.config.getoption("kit_report")
        if not report_dir or not self.verdicts:
            return
        from kit.report import write_reports

        self.written = write_reports(
            Path(report_dir), list(self.verdicts.values()), self.config.kit_target,
            started=self.config.kit_started, profile=self.config.getoption("kit_profile"),
            seed=self.config.getoption("kit_seed"))

    def pytest_terminal_summary(self, terminalreporter, exitstatus, config):
        if not self.verdicts:
            return
        from kit.report.summary import status_counts

        tr = terminalreporter
        tr.section("conformance summary")
        target = config.kit_target
        tr.line(f"kernel {target.release} ({target.arch}, {target.libc})")
        verdicts = list(self.verdicts.values())
        tr.line("  ".join(f"{status}: {n}" for status, n in status_counts(verdicts).items()))
        for v in verdicts:
            if v["status"] in ("deviates", "timeout", "error"):
                known = " (known)" if v.get("known_deviation") else ""
                tr.line(f"  {v['status']}{known}: {v['id']}: {v.get('message', '')[:160]}")
        for path in self.written:
            tr.line(f"report written: {path}")
