"""`kit`: the command line.

    kit run       conformance run on the running kernel; writes the report
    kit list      the behaviours in the spec set
    kit explain   what one behaviour checks, its citation, its last verdict
    kit replay    re-run one behaviour (optionally with exact parameters, on a matrix target),
                  full trace
    kit report    re-render the report, diff two runs, merge runs into a matrix page
    kit matrix    the suite on every target in targets/ (host, gVisor, VMs, containers)
    kit bench     wake-up latency and throughput of eventfd, pipes, signals, epoll (C helper)
    kit schema    print the JSON Schema of spec files
    kit coverage  which sentences of the installed man pages the specs check

Exit codes, of every command:
    0  every checked behaviour conforms (not-applicable/untestable ones, and known
       deviations, do not count)
    1  deviations or timeouts were found (`kit report --diff`: verdicts changed;
       `kit bench`: a combination failed)
    2  the kit itself failed: a spec error, a leak, a crash, an unreadable report, a
       report that could not be written; or the run was interrupted (Ctrl-C, SIGTERM)
    3  usage error: bad arguments, nothing selected, an unusable or busy report directory
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import kit

EXIT_CONFORMS, EXIT_DEVIATES, EXIT_KIT_ERROR, EXIT_USAGE = 0, 1, 2, 3
DEFAULT_REPORT = "report"
PYTEST_USAGE_ERROR, PYTEST_NO_TESTS = 4, 5


class CommandError(Exception):
    """A command cannot go on: MESSAGE for the user, CODE as the exit code."""

    def __init__(self, message: str, code: int = EXIT_KIT_ERROR):
        super().__init__(message)
        self.code = code


class ArgumentParser(argparse.ArgumentParser):
    """argparse exits 2 on a usage error; 2 is the kit's own failure here, usage is 3."""

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _usable_dir(path: Path, command: str):
    """The report directory a command writes into, checked and locked, or a usage error."""
    from kit.report.directory import ReportDirError, ReportLock, check_report_dir
    from kit.report.reportset import recover

    try:
        lock = ReportLock(check_report_dir(path), f"kit {command}").acquire()
    except ReportDirError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    recover(path)   # a killed run's half-done swap, finished before anything is added
    return lock


def default_specs() -> Path:
    """specs/ beside the kit package (a source checkout), else the specs installed with it
    (a wheel carries them as kit/data/specs, beside kit/data/targets), else ./specs."""
    package = Path(kit.__file__).resolve().parent
    for candidate in (package.parent / "specs", package / "data" / "specs"):
        if candidate.is_dir():
            return candidate
    return Path.cwd() / "specs"


class _Outcome:
    """A pytest plugin that keeps, after the session, what the kit's collector saw: the
    verdicts, whether the run was partial, where the report went."""

    def __init__(self):
        self.data: dict | None = None

    def pytest_unconfigure(self, config):
        collector = config.pluginmanager.get_plugin("kit-verdicts")
        if collector is not None:
            self.data = collector.outcome()


def _pytest(args: list[str]) -> tuple[int, dict | None]:
    import pytest

    outcome = _Outcome()
    code = int(pytest.main(args, plugins=[outcome]))
    return code, outcome.data


def _exit_code(pytest_code: int, outcome: dict | None) -> int:
    """Judged from the verdicts, not pytest's pass/fail: a known deviation is an xfail
    there, and a kit error a failure like a deviation."""
    if pytest_code in (PYTEST_USAGE_ERROR, PYTEST_NO_TESTS):
        return EXIT_USAGE
    if outcome is None or outcome["write_error"]:
        return EXIT_KIT_ERROR
    if outcome["partial"] and not outcome["stopped_on_failure"]:
        return EXIT_KIT_ERROR   # interrupted, timed out: what did not run may deviate
    code = _exit_by_verdicts(outcome["verdicts"])
    if code == EXIT_CONFORMS and pytest_code != 0 and not outcome["stopped_on_failure"]:
        return EXIT_KIT_ERROR   # something failed that is no verdict of the kit's
    return code


def _exit_by_verdicts(verdicts: list[dict]) -> int:
    if any(v["status"] == "error" for v in verdicts):
        return EXIT_KIT_ERROR
    if any(v["status"] in ("deviates", "timeout") and not v.get("known_deviation")
           for v in verdicts):
        return EXIT_DEVIATES
    return EXIT_CONFORMS


def _common_pytest_args(ns) -> list[str]:
    # --assert=plain: behaviours are YAML, judged by the kit, never by an assert
    # statement; with rewriting on, pytest rewrites all of Hypothesis (a pytest plugin's
    # distribution) in every process, a second each where bytecode is not written.
    args = ["-p", "kit.plugin", "--rootdir", str(Path(ns.specs[0]).resolve().parent),
            "--kit-profile", ns.profile, "--kit-seed", str(ns.seed), "--assert=plain"]
    for root in ns.specs:
        args += ["--kit-specs", str(root)]
    if ns.keyword:
        args += ["-k", ns.keyword]
    return args


def _summary_json(outcome: dict | None, report_dir: Path, code: int) -> dict:
    """What a script needs from a run: exit code, where this run's report is (None when
    none was written), whether it is partial, what went wrong."""
    outcome = outcome or {}
    written = outcome.get("written_dir")
    path = Path(written) / "report.json" if written else None
    report = json.loads(path.read_text()) if path and path.exists() else None
    out = {"exit_code": code, "report_dir": written, "requested_report_dir": str(report_dir),
           "partial": bool(outcome.get("partial")), "kept_report_dir": outcome.get("kept"),
           "error": outcome.get("write_error")}
    if outcome.get("partial"):
        out["partial_reason"] = outcome["partial"]["reason"]
        out["not_run"] = len(outcome["partial"]["not_run"])
    if report:
        out.update(target=report["target"], summary=report["summary"], problems=[
            {k: b.get(k) for k in ("id", "status", "message", "known_deviation", "replay")}
            for b in report["behaviours"] if b["status"] in ("deviates", "timeout", "error")])
    return out


def cmd_run(ns) -> int:
    import contextlib
    import tempfile

    report_dir = Path(ns.report)
    with contextlib.ExitStack() as cleanup:
        cleanup.enter_context(_usable_dir(report_dir, "run"))
        args = [*map(str, ns.specs), *_common_pytest_args(ns), "--kit-report",
                str(report_dir), "-q" if not ns.verbose else "-v", "-n", str(ns.jobs),
                "-p", "no:cacheprovider"]
        if ns.bench:  # measured first, so the report written at the end embeds it
            bench_file = Path(cleanup.enter_context(tempfile.TemporaryDirectory())) / "b.json"
            bench_file.write_text(json.dumps(_bench_before_run(), default=str))
            args += ["--kit-bench", str(bench_file)]
        if ns.exitfirst:
            args.append("-x")
        if ns.allow_machine_wide:
            args.append("--allow-machine-wide")
        if not ns.json:
            code, outcome = _pytest(args + ns.pytest_args)
            return _exit_code(code, outcome)
        with contextlib.redirect_stdout(sys.stderr):  # pytest's progress to stderr
            code, outcome = _pytest(args + ns.pytest_args)
            code = _exit_code(code, outcome)
        print(json.dumps(_summary_json(outcome, report_dir, code), indent=2))
        return code


def cmd_replay(ns) -> int:
    if ns.targets and not ns.target:
        raise CommandError("--targets names where target files are: give --target NAME too",
                           EXIT_USAGE)
    args = [*map(str, ns.specs), *_common_pytest_args(ns), "-v", "-p", "no:cacheprovider",
            "--kit-id", ns.id, "-n", "0"]
    if ns.params is not None:
        # checked before anything runs: a bad value is the user's mistake, not the kernel's
        from kit.replay import BadParams, check_replay

        try:
            check_replay(ns.specs, ns.id, ns.params)
        except BadParams as exc:
            print(f"kit replay: {exc}", file=sys.stderr)
            return EXIT_USAGE
        args += ["--kit-params", ns.params]
    if ns.target:
        return _replay_on_target(ns)
    code, outcome = _pytest(args)
    if code == PYTEST_NO_TESTS:
        print(f"kit replay: no behaviour with id {ns.id!r} (see `kit list`)", file=sys.stderr)
    return _exit_code(code, outcome)


def _replay_on_target(ns) -> int:
    """`kit replay --target NAME ID`: the example run on that target as `kit matrix` runs
    the suite there; the trace and verdict printed here, the exit code as `kit replay`'s.

    A target this machine cannot run (no runsc, no root, another architecture) exits 3,
    though it is the machine's lack and not a typo: the README's table gives 3 to every
    request refused before anything ran (an unusable or busy report directory is the
    machine's state too), keeps 2 for the kit failing or a run cut short, and `kit matrix
    --only NAME` exits 3 on the same machine. A target that starts and then fails (a VM
    that does not boot, no report back, its timeout) is 2."""
    from kit.engine.runner import explain
    from kit.matrix import children
    from kit.matrix.replay import (
        ReplayFailed,
        ReplayRefused,
        replay_on_target,
        runnable_target,
    )
    from kit.replay import find_behaviour
    from kit.report.target_text import kernel_text

    if ns.specs != [default_specs()]:
        raise CommandError("--specs cannot be combined with --target: a target runs the "
                           "checkout's own spec set, as in `kit matrix`", EXIT_USAGE)
    if find_behaviour(ns.specs, ns.id) is None:
        raise CommandError(f"no behaviour with id {ns.id!r} (see `kit list`); nothing was "
                           f"run", EXIT_USAGE)
    repo = default_specs().parent
    try:
        target = runnable_target(Path(ns.targets or repo / "targets"), ns.target, repo)
    except ReplayRefused as exc:
        raise CommandError(f"{exc}; nothing was run", EXIT_USAGE) from None
    kit_args = ["--profile", ns.profile, "--seed", str(ns.seed)]
    if ns.keyword:
        kit_args += ["-k", ns.keyword]

    def progress(message: str) -> None:
        print(f"kit replay: {message}", file=sys.stderr, flush=True)

    try:
        with children.stop_on_signals():   # the target's processes go with it
            replayed = replay_on_target(target, ns.id, ns.params, kit_args, progress)
    except ReplayFailed as exc:
        raise CommandError(str(exc)) from None
    except children.Signalled as exc:
        raise CommandError(f"stopped ({exc})") from None
    how = replayed.result.metadata.get("how", target.kind)
    print(f"on target {target.name} ({how}; kernel {kernel_text(replayed.target)})")
    for verdict in replayed.verdicts:
        print(explain(verdict))
    return _exit_by_verdicts(replayed.verdicts)


def _all_behaviours(specs: list[Path]):
    from kit.spec.loader import load_tree

    for root in specs:
        if not root.exists():
            raise CommandError(f"no spec file or directory {root}", EXIT_USAGE)
    for loaded in load_tree(*specs):   # all roots at once: an id may appear only once
        yield from ((b, None) for b in loaded.behaviours)
        yield from ((None, e) for e in loaded.errors)


def _last_verdicts(report: Path) -> dict:
    """The last run's verdicts by id; {} before the first run."""
    from kit.report.reportset import settle

    if report.is_dir():
        settle(report)
    path = report / "report.json"
    if not path.exists():
        return {}
    return {b["id"]: b for b in _load_report(path)["behaviours"]}


def cmd_list(ns) -> int:
    last = _last_verdicts(Path(ns.report))
    rows, errors = [], 0
    for behaviour, error in _all_behaviours(ns.specs):
        if error:
            errors += 1
            print(f"spec error: {error}", file=sys.stderr)
            continue
        if ns.keyword and ns.keyword not in behaviour.id:
            continue
        if ns.family and behaviour.family != ns.family:
            continue
        if ns.basis and behaviour.cite.basis != ns.basis:
            continue
        verdict = last.get(behaviour.id, {})
        status = verdict.get("status", "")
        if ns.status and status != ns.status:
            continue
        rows.append({"id": behaviour.id, "family": behaviour.family, "title": behaviour.title,
                     "last_status": status, "known": bool(verdict.get("known_deviation")),
                     "fixed": bool(verdict.get("fixed")), "basis": behaviour.cite.basis,
                     "file": behaviour.file,
                     "line": behaviour.line,
                     "documentation_defect": bool(behaviour.documentation_defect),
                     # why and since when: from the last run, else for this kernel now
                     "gates": verdict.get("gates") or _gates_here(behaviour)})
    if ns.json:
        print(json.dumps(rows, indent=2))
    else:
        width = max((len(r["id"]) for r in rows), default=10)
        for r in rows:
            mark = " (known)" if r["known"] else " (fixed)" if r["fixed"] else ""
            mark += " (doc defect)" if r["documentation_defect"] else ""
            shown = (r["last_status"] or "-") + mark
            impl = "[implementation] " if r["basis"] == "implementation" else ""
            print(f"{r['id']:<{width}}  {shown:<22}  {impl}{r['title']}")
            for gate in r["gates"]:
                print(f"{'':<{width}}    kernel change: {gate}")
        print(f"{len(rows)} behaviours", file=sys.stderr)
    return EXIT_KIT_ERROR if errors else EXIT_CONFORMS


_HERE: list = []


def _gates_here(behaviour) -> list[str]:
    """The behaviour's kernel-change gates judged for the running kernel (no run needed)."""
    from kit.engine.gates import explain
    from kit.engine.patch_level import BadKernelVersion
    from kit.engine.target import Target

    if not _HERE:
        try:
            _HERE.append(Target.current())
        except BadKernelVersion:
            _HERE.append(None)
    return explain(behaviour, _HERE[0]) if _HERE[0] else []


def cmd_explain(ns) -> int:
    last = _last_verdicts(Path(ns.report))
    for behaviour, _ in _all_behaviours(ns.specs):
        if behaviour and behaviour.id == ns.id:
            break
    else:
        print(f"no behaviour with id {ns.id!r} (see `kit list`)", file=sys.stderr)
        return EXIT_USAGE
    verdict = last.get(ns.id)
    if ns.json:
        print(json.dumps({"id": behaviour.id, "title": behaviour.title,
                          "cite": behaviour.cite.__dict__, "file": behaviour.file,
                          "line": behaviour.line, "spec": behaviour.source,
                          "last_verdict": verdict}, indent=2))
        return EXIT_CONFORMS
    c = behaviour.cite
    print(f"{behaviour.id}: {behaviour.title}\n")
    if c.basis == "implementation":
        print(f"Implementation behaviour (Linux beyond its man page); the page, {c.page}, "
              f"{c.section}:\n  \"{c.quote}\"\nFrom: {c.source}\n")
    else:
        print(f"Documented in {c.page}, {c.section}:\n  \"{c.quote}\"\n")
    print(f"Spec ({behaviour.file}:{behaviour.line}):\n{behaviour.source}\n")
    if verdict:
        print(f"Last run: {verdict['status']}" + (f" - {verdict['message']}"
                                                  if verdict.get("message") else ""))
        if verdict.get("known_deviation"):
            print(f"Known deviation: {verdict['known_deviation']}")
        if verdict.get("replay"):
            print(f"Replay: {verdict['replay']}")
    else:
        print(f"Last run: no verdict in {ns.report}/report.json")
    # why this kernel is held to the rule it is, and since when
    for gate in (verdict or {}).get("gates") or _gates_here(behaviour):
        print(f"Kernel change: {gate}")
    defect = behaviour.documentation_defect
    if defect:
        print(f"Documentation defect: the page says {defect.claim}; the kernel "
              f"{defect.kernel_does}. Evidence: {defect.evidence}")
    return EXIT_CONFORMS


def _load_report(path: Path) -> dict:
    """A report.json (or the directory holding one); unreadable input is a kit error (2),
    never confused with "verdicts changed" (1)."""
    path = path / "report.json" if path.is_dir() else path
    report = _load_json(path)
    if not isinstance(report, dict) or not isinstance(report.get("behaviours"), list):
        raise CommandError(f"cannot read {path}: not a kit report (no list of behaviours)")
    return report


def _load_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CommandError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") \
            from None


def cmd_report(ns) -> int:
    from kit.report.atomic import write_atomic
    from kit.report.diff import diff_reports, render_diff
    from kit.report.html import write_html
    from kit.report.markdown import render_markdown

    if ns.diff:
        diff = diff_reports(_load_report(ns.diff[0]), _load_report(ns.diff[1]))
        print(json.dumps(diff, indent=2) if ns.json else render_diff(diff))
        return EXIT_DEVIATES if diff["changed"] or diff["added"] or diff["removed"] \
            else EXIT_CONFORMS
    sources = ns.merge or [Path(ns.report)]
    reports = [_load_report(p) for p in sources]
    if ns.merge:   # a matrix target's column replays on that target (kit replay --target)
        from kit.report.target_replay import add_target_replays

        reports = [add_target_replays(r) for r in reports]
    for source, report in zip(sources, reports):
        bench = (source if source.is_dir() else source.parent) / "bench.json"
        if bench.exists() and "bench" not in report:
            report["bench"] = _load_json(bench)
    out = Path(ns.output or (ns.report if not ns.merge else "report-matrix"))
    with _usable_dir(out, "report"):
        try:
            written = [write_html(out / "report.html", reports)]
            if len(reports) == 1:
                written.append(write_atomic(out / "report.md", render_markdown(reports[0])))
        except OSError as exc:
            raise CommandError(f"could not write into {out}: {exc.strerror or exc}; "
                               "the previous files were kept") from None
    for path in written:
        print(f"wrote {path}")
    return EXIT_CONFORMS


def cmd_matrix(ns) -> int:
    from kit.matrix import children
    from kit.matrix.paths import OutputPathError
    from kit.matrix.runner import run_matrix
    from kit.matrix.targets import TargetFileError, load_targets

    repo = default_specs().parent
    try:
        targets = load_targets(Path(ns.targets or repo / "targets"), ns.only)
    except TargetFileError as exc:
        print(f"kit matrix: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if ns.list:
        for t in targets:
            reason = t.unavailable()
            if not reason:
                problem = t.fetch_problem()
                reason = f"cannot fetch: {problem}" if problem else None
            print(f"{t.name:<16} {t.kind:<10} {'available' if not reason else 'skipped: ' + reason}")
        return EXIT_CONFORMS
    from kit.report.directory import ReportDirError, check_report_dir

    try:
        check_report_dir(ns.output)
    except ReportDirError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    kit_args = ["--profile", ns.profile, "--seed", str(ns.seed)]
    if ns.bench:
        kit_args.append("--bench")
    if ns.keyword:
        kit_args += ["-k", ns.keyword]
    try:
        with children.stop_on_signals():
            matrix = run_matrix(targets, repo=repo, out=Path(ns.output), kit_args=kit_args,
                                jobs=ns.jobs)
    except OutputPathError as exc:
        print(f"kit matrix: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (KeyboardInterrupt, children.Signalled) as exc:
        print(f"kit matrix: stopped ({children.stopped_by(exc)}); the targets that finished are merged in "
              f"{Path(ns.output) / 'report.html'}", file=sys.stderr)
        return EXIT_KIT_ERROR
    if ns.json:
        print(json.dumps(matrix, indent=2, default=str))
    else:
        print(f"merged report: {Path(ns.output) / 'report.html'}")
    ran = [t for t in matrix["targets"] if t["status"] == "ran"]
    if not ran:
        return EXIT_USAGE
    if any(t["status"] in ("failed", "timeout") or t["exit_code"] not in (0, 1)
           for t in matrix["targets"] if t["status"] != "skipped"):
        return EXIT_KIT_ERROR
    return EXIT_DEVIATES if any(t["exit_code"] == 1 for t in ran) else EXIT_CONFORMS


def write_bench(out: Path, bench: dict) -> Path:
    from kit.report.atomic import write_atomic

    return write_atomic(out / "bench.json", json.dumps(bench, indent=2, default=str) + "\n")


def _described_target() -> dict:
    """This machine's Target.describe(); a bad KIT_KERNEL_VERSION is a usage error."""
    from kit.engine.patch_level import BadKernelVersion
    from kit.engine.target import Target

    try:
        return Target.current().describe()
    except BadKernelVersion as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None


def _bench_before_run(rounds: int = 2000) -> dict:
    """`kit run --bench`: measure first, so the report written at the end embeds the
    figures (a matrix target returns one report.json, figures included)."""
    import time

    from kit.bench.run import run_all

    target = _described_target()    # first: a bad override costs no measuring
    started = time.time()
    rows = run_all(rounds=rounds, timeout=20.0, progress=None)
    return {"target": target, "rounds": rounds,
            "duration_s": round(time.time() - started, 3), "results": rows}


def cmd_bench(ns) -> int:
    import time

    from kit.bench.run import render, run_all

    if ns.rounds < 1:
        raise CommandError("--rounds must be at least 1", EXIT_USAGE)
    target = _described_target()
    out = Path(ns.report)

    def progress(combo):
        print("kit bench: " + " ".join(combo), file=sys.stderr, flush=True)

    with _usable_dir(out, "bench"):   # checked before measuring: a bad directory costs nothing
        started = time.time()
        rows = run_all(rounds=ns.rounds, timeout=ns.timeout,
                       progress=progress if ns.json else None)
        bench = {"target": target, "rounds": ns.rounds,
                 "duration_s": round(time.time() - started, 3), "results": rows}
        try:
            write_bench(out, bench)
        except OSError as exc:
            raise CommandError(f"could not write {out / 'bench.json'}: "
                               f"{exc.strerror or exc}; the previous file was kept") from None
    if ns.json:
        print(json.dumps(bench, indent=2, default=str))
    else:
        print(render(rows))
        print(f"wrote {out / 'bench.json'} (`kit report` shows it beside the verdicts)")
    skipped = all(str(r["error"] or "").startswith("skipped:") for r in rows)
    return EXIT_CONFORMS if skipped or not any(r["error"] for r in rows) else EXIT_DEVIATES


def default_sentences(specs: list[Path]) -> Path:
    """sentences/ beside the first spec root when there is one, else the kit's own."""
    from kit.coverage.compute import default_data_dir

    first = Path(specs[0]).resolve()
    beside = (first if first.is_dir() else first.parent).parent / "sentences"
    return beside if beside.is_dir() else default_data_dir()


def cmd_coverage(ns) -> int:
    from kit.coverage.compute import compute, quotes_of
    from kit.coverage.manpage import ManError
    from kit.coverage.render import as_json, as_text

    sentences = Path(ns.sentences) if ns.sentences else default_sentences(ns.specs)
    if not sentences.is_dir():
        raise CommandError(f"no sentence data directory {sentences}", EXIT_USAGE)
    behaviours, errors = [], []
    for behaviour, error in _all_behaviours(ns.specs):
        (behaviours.append(behaviour) if behaviour else errors.append(error))
    try:
        cov = compute(quotes_of(behaviours), sentences)
    except ManError as exc:
        raise CommandError(str(exc)) from None
    cov.errors[:0] = errors
    if ns.page:
        unknown = sorted(set(ns.page) - {p.page for p in cov.pages})
        if unknown:
            raise CommandError(f"no sentence data for {', '.join(unknown)} (pages: "
                               f"{', '.join(p.page for p in cov.pages)})", EXIT_USAGE)
        cov.pages = [p for p in cov.pages if p.page in ns.page]
    try:
        print(json.dumps(as_json(cov), indent=2) if ns.json else
              as_text(cov, every_sentence=ns.all), flush=True)
    except BrokenPipeError:   # `kit coverage | head`: the reader has seen enough
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps the exit flush quiet
    for error in cov.errors:   # stale quotes and marks are spec errors: exit 2
        print(f"kit coverage: {error}", file=sys.stderr)
    return EXIT_KIT_ERROR if cov.errors else EXIT_CONFORMS


def cmd_schema(ns) -> int:
    from kit.spec.schema import build_schema

    print(json.dumps(build_schema(), indent=2, sort_keys=True))
    return EXIT_CONFORMS


def parser() -> argparse.ArgumentParser:
    top = ArgumentParser(
        prog="kit", description="Check, behaviour by behaviour, that the running kernel does "
                                "what the Linux man-pages say.",
        epilog="Exit codes: 0 conforms (known deviations do not count), 1 deviations or "
               "timeouts, 2 kit or spec error or an interrupted run, "
               "3 usage error or nothing selected.")
    top.add_argument("--version", action="version", version=f"kit {kit.__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p, selection=True):
        p.add_argument("--specs", dest="specs", action="append", type=Path,
                       help="spec file or directory (default: the kit's specs/)")
        p.add_argument("--report", default=DEFAULT_REPORT, metavar="DIR",
                       help="report directory (default: %(default)s)")
        if selection:
            p.add_argument("-k", dest="keyword", help="select behaviours like pytest -k")
            p.add_argument("--profile", default="quick", choices=("quick", "default",
                                                                  "thorough"),
                           help="examples per behaviour (default: %(default)s)")
            p.add_argument("--seed", type=int, default=0, help="example generation seed")

    run = sub.add_parser(
        "run", help="run the conformance suite and write the report",
        description="Runs every selected behaviour and writes DIR/report.json, report.md, "
                    "report.html and junit.xml (and bench.json with --bench) as one set: "
                    "staged in DIR and swapped in whole, so the files always come from one "
                    "run and a file of an earlier run never stays beside them. DIR is "
                    "checked (a writable directory, created if missing) and locked before "
                    "anything runs; a second run into it is refused. A run that stops "
                    "early (Ctrl-C, SIGTERM, -x) is marked partial in every file; if DIR "
                    "holds a complete report, that one is kept and the partial one goes "
                    "to DIR/partial/. A report that cannot be written (a full disk) leaves "
                    "the previous one in place and exits 2.")
    common(run)
    run.add_argument("-n", "--jobs", default="auto",
                     help="parallel workers, as pytest-xdist -n (default: %(default)s)")
    run.add_argument("-x", "--exitfirst", action="store_true", help="stop at the first failure")
    run.add_argument("-v", "--verbose", action="store_true", help="one line per behaviour")
    run.add_argument("--json", action="store_true",
                     help="print a JSON summary on stdout (progress goes to stderr)")
    run.add_argument("--allow-machine-wide", action="store_true",
                     help="also run behaviours that change a sysctl (fs.file-max, "
                          "fs.epoll.max_user_watches), one at a time, each value journalled "
                          "and restored: only where the machine is the kit's own")
    run.add_argument("--bench", action="store_true",
                     help="also run the notification benchmark (kit bench) and put its "
                          "figures in the report")
    run.add_argument("pytest_args", nargs="*", help="extra pytest arguments, after --")
    run.set_defaults(func=cmd_run)

    lst = sub.add_parser("list", help="list behaviours")
    common(lst, selection=False)
    lst.add_argument("-k", dest="keyword", help="substring of the id")
    lst.add_argument("--family", help="only this family (eventfd, epoll, ...)")
    lst.add_argument("--status", help="only behaviours with this status in the last report")
    lst.add_argument("--basis", choices=("documented", "implementation"),
                     help="only documented claims, or only implementation behaviour (what "
                          "Linux does where its man page is silent or looser)")
    lst.add_argument("--json", action="store_true", help="machine-readable output")
    lst.set_defaults(func=cmd_list)

    explain = sub.add_parser("explain", help="what a behaviour checks and its last verdict")
    common(explain, selection=False)
    explain.add_argument("id")
    explain.add_argument("--json", action="store_true")
    explain.set_defaults(func=cmd_explain)

    replay = sub.add_parser("replay", help="re-run one behaviour with a full trace")
    common(replay)
    replay.add_argument("id")
    replay.add_argument("--params", help="exact parameters as JSON (from the report)")
    replay.add_argument("--target", metavar="NAME",
                        help="run it on this matrix target (a name in targets/), the way "
                             "`kit matrix` runs the suite there: inside runsc, in the "
                             "userland, in the booted kernel")
    replay.add_argument("--targets", metavar="DIR",
                        help="target files, with --target (default: targets/)")
    replay.set_defaults(func=cmd_replay)

    report = sub.add_parser(
        "report", help="re-render the report, diff two runs, or merge runs into a matrix",
        description="Without options: re-render report.html and report.md from "
                    "DIR/report.json. --diff OLD NEW: the behaviours whose verdict changed "
                    "(exit 1 if any, 2 if an input cannot be read). --merge A B ...: one "
                    "HTML page with a column per run. Files are replaced by a rename, never "
                    "left half written.")
    report.add_argument("--report", default=DEFAULT_REPORT, metavar="DIR",
                        help="report directory to re-render (default: %(default)s)")
    report.add_argument("--diff", nargs=2, type=Path, metavar=("OLD", "NEW"),
                        help="two report.json files (or their directories)")
    report.add_argument("--merge", nargs="+", type=Path, metavar="REPORT",
                        help="report.json files (or directories) to show side by side")
    report.add_argument("-o", "--output", metavar="DIR", help="where to write")
    report.add_argument("--json", action="store_true", help="--diff as JSON")
    report.set_defaults(func=cmd_report)

    matrix = sub.add_parser(
        "matrix", help="run the suite on every available target and merge the reports",
        description="Targets are the YAML files in targets/ (the running kernel, gVisor, "
                    "Debian kernels under QEMU, userlands in containers). Targets this "
                    "machine cannot run are skipped with the reason. Output: OUT/report.html "
                    "(a column per target), OUT/matrix.json, OUT/matrix.md, and per-target "
                    "reports and logs.")
    matrix.add_argument("-o", "--output", default="report-matrix", metavar="OUT",
                        help="output directory (default: %(default)s)")
    matrix.add_argument("--targets", metavar="DIR", help="target files (default: targets/)")
    matrix.add_argument("--only", action="append", metavar="NAME",
                        help="run only this target (repeatable)")
    matrix.add_argument("--list", action="store_true",
                        help="list targets and whether this machine can run them")
    matrix.add_argument("-j", "--jobs", type=int, default=None,
                        help="targets at a time (default: one per core)")
    matrix.add_argument("-k", dest="keyword", help="select behaviours like pytest -k")
    matrix.add_argument("--profile", default="quick", choices=("quick", "default", "thorough"))
    matrix.add_argument("--seed", type=int, default=0)
    matrix.add_argument("--json", action="store_true",
                        help="print matrix.json on stdout (progress goes to stderr)")
    matrix.add_argument("--bench", action="store_true",
                        help="also run the notification benchmark on every target; its "
                             "figures appear per target in the merged report")
    matrix.set_defaults(func=cmd_matrix)

    bench = sub.add_parser(
        "bench", help="wake-up latency and throughput of eventfd, pipes, signals, epoll",
        description="Measure, with a C helper built on the spot, the round-trip latency "
                    "and the throughput of waking a waiter through eventfd, eventfd in "
                    "semaphore mode, a pipe and a real-time signal, directly and through "
                    "epoll, between two threads and between two processes. Writes "
                    "DIR/bench.json, which the report shows beside the verdicts. Exit "
                    "code 0: every combination measured (or all skipped: no C compiler); "
                    "1: some combination failed.")
    bench.add_argument("--report", default=DEFAULT_REPORT, metavar="DIR",
                       help="write bench.json here (default: %(default)s)")
    bench.add_argument("--rounds", type=int, default=10_000, metavar="N",
                       help="timed round trips per combination; the throughput burst is "
                            "10 x N notifications (default: %(default)s)")
    bench.add_argument("--timeout", type=float, default=20.0, metavar="SECONDS",
                       help="bound on each combination's run (default: %(default)s)")
    bench.add_argument("--json", action="store_true",
                       help="print bench.json on stdout (progress goes to stderr)")
    bench.set_defaults(func=cmd_bench)

    coverage = sub.add_parser(
        "coverage", help="which sentences of the installed man pages the specs check",
        description="Renders the installed man pages (man-db), splits them into sentences "
                    "and maps every spec's quote to its sentences. Per page: covered, "
                    "untestable (with the reason), not a claim (with the reason, from "
                    "sentences/*.yaml) and uncovered sentences, and the covered share of "
                    "the testable ones. A quote or a mark that matches nothing in its "
                    "installed page is a stale citation: named with file, line and "
                    "behaviour, exit 2.")
    coverage.add_argument("--specs", dest="specs", action="append", type=Path,
                          help="spec file or directory (default: the kit's specs/)")
    coverage.add_argument("--sentences", metavar="DIR",
                          help="sentence data (default: sentences/ beside specs/)")
    coverage.add_argument("--page", action="append", metavar="PAGE",
                          help="only this page, e.g. 'eventfd(2)' (repeatable)")
    coverage.add_argument("--all", action="store_true",
                          help="list every sentence with its status, not only uncovered ones")
    coverage.add_argument("--json", action="store_true", help="machine-readable output")
    coverage.set_defaults(func=cmd_coverage)

    schema = sub.add_parser("schema", help="print the JSON Schema of spec files")
    schema.set_defaults(func=cmd_schema)
    return top


def main(argv: list[str] | None = None) -> int:
    ns = parser().parse_args(argv)
    if getattr(ns, "specs", None) is None and ns.command not in ("schema", "report", "matrix",
                                                                      "bench"):
        ns.specs = [default_specs()]
    try:
        return ns.func(ns)
    except CommandError as exc:
        print(f"kit {ns.command}: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print(f"kit {ns.command}: interrupted", file=sys.stderr)
        return EXIT_KIT_ERROR
    except Exception:  # noqa: BLE001 - a bug in the kit must not exit 1, "deviations found"
        import traceback

        traceback.print_exc()
        print(f"kit {ns.command}: internal error (a bug in the kit; the traceback above "
              "says where)", file=sys.stderr)
        return EXIT_KIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
