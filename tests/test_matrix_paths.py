"""Where `kit matrix` writes (kit/matrix/paths.py, runner.py): absolute paths for every
target, checked before any target runs, nothing written outside the output directory."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from kit.matrix.base import RunRequest, RunResult, Target
from kit.matrix.paths import (
    OutputPathError,
    log_tail,
    name_problem,
    output_root,
    read_regular,
    target_paths,
)
from kit.matrix.runner import Progress, run_matrix
from kit.report.atomic import write_atomic

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["host", "gvisor", "debian-6.12", "alpine-musl", "a_b.c",
                                  "6.1", "x" * 64])
def test_usable_target_names(name):
    assert name_problem(name) is None


@pytest.mark.parametrize("name", ["", ".", "..", "../etc", "/tmp/x", "a/b", "a\\b", "-rf",
                                  ".hidden", "two words", "tab\there", "x" * 65, "émile",
                                  "new\nline", 5, None])
def test_unusable_target_names(name):
    assert name_problem(name)


def test_a_relative_output_directory_becomes_absolute_and_exists(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = output_root("report-matrix")
    assert root == tmp_path.resolve() / "report-matrix" and root.is_dir()


def test_an_output_directory_through_a_symlink_is_named_by_its_real_path(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    # a guest mounts the share at this path inside its chroot, where the host's
    # symlink may point elsewhere: it gets the real path
    assert output_root(tmp_path / "link" / "out") == (tmp_path / "real" / "out").resolve()


def test_an_output_directory_that_is_a_file_or_cannot_be_made_is_refused(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputPathError, match="is not a directory"):
        output_root(tmp_path / "file")
    with pytest.raises(OutputPathError, match="cannot create"):
        output_root(tmp_path / "file" / "sub")


def test_an_output_directory_that_cannot_be_written_is_refused():
    with pytest.raises(OutputPathError, match="cannot (create|write)"):
        output_root("/proc/self/kit-matrix-out")


def test_target_paths_are_directly_inside_the_output_directory(tmp_path):
    root = output_root(tmp_path / "out")
    assert target_paths(root, "debian-6.1") == (root / "debian-6.1", root / "debian-6.1.log")
    with pytest.raises(OutputPathError, match="not a valid target name"):
        target_paths(root, "../escape")
    with pytest.raises(OutputPathError, match="not an absolute path"):
        target_paths(Path("out"), "host")


def test_a_symlink_in_the_output_directory_is_not_written_through(tmp_path):
    root = output_root(tmp_path / "out")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (root / "host").symlink_to(elsewhere)
    with pytest.raises(OutputPathError, match="symbolic link"):
        target_paths(root, "host")
    (root / "gvisor.log").symlink_to(tmp_path / "victim")
    with pytest.raises(OutputPathError, match="symbolic link"):
        target_paths(root, "gvisor")


def test_a_planted_symlink_is_replaced_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    planted = tmp_path / "report.json"
    planted.symlink_to(victim)
    write_atomic(planted, "{}\n")
    assert victim.read_text() == "precious"
    assert not planted.is_symlink() and planted.read_text() == "{}\n"


def test_read_regular_refuses_symlinks_and_fifos(tmp_path):
    (tmp_path / "secret").write_text("root:x:0:0")
    (tmp_path / "link").symlink_to(tmp_path / "secret")
    with pytest.raises(OSError):
        read_regular(tmp_path / "link")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(OutputPathError, match="not a regular file"):
        read_regular(tmp_path / "fifo")          # refused, not a read that blocks
    assert read_regular(tmp_path / "secret") == b"root:x:0:0"


def test_relative_paths_in_a_run_request_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    request = RunRequest(repo=Path("."), out_dir=Path("out/host"), kit_args=[], timeout=1,
                         log=Path("out/host.log"))
    assert request.repo == tmp_path.resolve()
    assert request.out_dir == tmp_path.resolve() / "out" / "host"
    assert request.log == tmp_path.resolve() / "out" / "host.log"


# -- run_matrix with targets that only record what they are given ---------------------------


class Recording(Target):
    """A target that runs nothing: it keeps its request and leaves what `leave` says."""

    kind = "recording"

    def __init__(self, name: str, leave=None):
        super().__init__(name, {})
        self.leave, self.requests = leave, []

    def unavailable(self):
        return None

    def run(self, request: RunRequest) -> RunResult:
        self.requests.append(request)
        if self.leave is None:
            return RunResult(self.name, "failed", "ran nothing")
        request.out_dir.mkdir(parents=True, exist_ok=True)
        report = request.out_dir / "report.json"
        self.leave(report)
        return RunResult(self.name, "ran", report=report, exit_code=0)


def quiet() -> Progress:
    return Progress(stream=io.StringIO(), every=3600)


def test_a_relative_output_directory_reaches_every_target_as_an_absolute_path(
        tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = Recording("host")
    matrix = run_matrix([target], repo=REPO, out=Path("report-matrix"), kit_args=[],
                        progress=quiet())
    [request] = target.requests
    root = tmp_path.resolve() / "report-matrix"
    assert request.out_dir == root / "host" and request.log == root / "host.log"
    assert request.repo == REPO and target.repo == REPO
    assert {p.name for p in root.iterdir()} >= {"matrix.json", "matrix.md", "report.html"}
    assert matrix["targets"][0]["status"] == "failed"


def test_a_bad_name_fails_that_target_and_the_others_run(tmp_path):
    bad, good = Recording("../outside"), Recording("host")
    matrix = run_matrix([bad, good], repo=REPO, out=tmp_path / "out", kit_args=[],
                        progress=quiet())
    assert bad.requests == [] and len(good.requests) == 1
    status = {t["name"]: (t["status"], t["reason"]) for t in matrix["targets"]}
    assert status["../outside"][0] == "failed"
    assert "not a valid target name" in status["../outside"][1]
    assert not (tmp_path / "outside").exists() and not (tmp_path / "outside.log").exists()


def test_an_unusable_output_directory_stops_the_matrix_before_any_target(tmp_path):
    (tmp_path / "file").write_text("")
    target = Recording("host")
    with pytest.raises(OutputPathError):
        run_matrix([target], repo=REPO, out=tmp_path / "file", kit_args=[], progress=quiet())
    assert target.requests == []


def test_a_report_that_is_a_symlink_is_not_read_into_the_matrix(tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"target": {"release": "leaked"}, "behaviours": []}))
    target = Recording("host", leave=lambda report: report.symlink_to(secret))
    matrix = run_matrix([target], repo=REPO, out=tmp_path / "out", kit_args=[],
                        progress=quiet())
    [row] = matrix["targets"]
    assert row["status"] == "failed" and "unreadable" in row["reason"]
    assert "leaked" not in (tmp_path / "out" / "matrix.json").read_text()
    assert "leaked" not in (tmp_path / "out" / "report.html").read_text()


def test_a_report_that_is_not_a_kit_report_fails_that_target(tmp_path):
    target = Recording("host", leave=lambda report: report.write_text("[1, 2]"))
    matrix = run_matrix([target], repo=REPO, out=tmp_path / "out", kit_args=[],
                        progress=quiet())
    assert matrix["targets"][0]["status"] == "failed"
    assert "not a kit report" in matrix["targets"][0]["reason"]


def test_matrix_files_are_replaced_whole(tmp_path):
    path = tmp_path / "matrix.json"
    write_atomic(path, "old\n")
    with pytest.raises(TypeError):
        write_atomic(path, 12345)          # fails mid-write
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_command_that_leaves_no_report_fails_with_the_end_of_its_log(tmp_path):
    target = Recording("host")
    request = RunRequest(repo=REPO, out_dir=tmp_path / "host", kit_args=[], timeout=30,
                         log=tmp_path / "host.log")
    script = "echo starting; echo; echo 'kit run: cannot write report dir: read-only' >&2"
    result = target.run_command(request, ["/bin/sh", "-c", script + "; exit 2"], {})
    assert result.status == "failed" and result.exit_code == 2
    assert result.reason.startswith("no report.json (exit 2): starting | kit run: cannot "
                                    "write report dir: read-only; see ")
    assert log_tail(tmp_path / "missing.log") == ""


def test_the_targets_that_took_longest_last_time_start_first(tmp_path):
    """With one target at a time the start order is the run order: a VM that took minutes
    last time must not start last and run on alone."""
    from kit.matrix.runner import longest_first

    out = tmp_path / "out"
    out.mkdir()
    targets = [Recording(n) for n in ("host", "vm", "gvisor", "new")]
    assert [t.name for t in longest_first(targets, out)] == ["host", "vm", "gvisor", "new"]
    (out / "matrix.json").write_text(json.dumps({"targets": [
        {"name": "host", "status": "ran", "duration": 50.0},
        {"name": "vm", "status": "ran", "duration": 500.0},
        {"name": "gvisor", "status": "ran", "duration": 300.0}]}))
    order = []
    for target in targets:
        target.leave = None
        target.run = lambda request, t=target: order.append(t.name) or \
            RunResult(t.name, "failed", "ran nothing")
    run_matrix(targets, repo=REPO, out=out, kit_args=[], jobs=1, progress=quiet())
    assert order == ["new", "vm", "gvisor", "host"]   # never timed: longest, to be safe
    (out / "matrix.json").write_text("not json")
    assert [t.name for t in longest_first(targets, out)] == ["host", "vm", "gvisor", "new"]
