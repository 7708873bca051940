"""The CI workflow's jobs run: each job's steps are taken from .github/workflows/matrix.yml
and run here the way a GitHub runner runs them, as far as this machine can.

A runner, emulated (class Runner): a fresh copy of the checkout as the workspace
(actions/checkout), the Python here standing in for actions/setup-python when it is the
asked-for version, every `run:` script through `bash --noprofile --norc -eo pipefail`
with the job's and step's `env:` and ${{ }} expressions evaluated (only the contexts the
workflow uses: an unknown one fails the test, never passes unevaluated), `sudo` as the
runner's password-less root, and upload-artifact / download-artifact as copies through a
directory, so the merge job finds what the target jobs uploaded. A job in a
`debian:bookworm` container runs here directly when this machine is Debian 12 as root (as
the container is). Steps with an id starting `machine-` set up the runner's own machine
(udev rules, packages from Ubuntu's archive): they are not run here, but the packages they
install are checked to be present. Manual runs (`workflow_dispatch`) may narrow the run
with a -k expression (`inputs.select`), which the emulation uses to keep each target to a
handful of behaviours.

Jobs this machine cannot run are skipped with the reason: the test-suite job (it is this
suite), the QEMU and qemu-user targets unless KIT_VM_TESTS=1 (minutes each under
emulation), and any target
whose `kit matrix` would skip it here (no container engine, no runsc ...).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kit.cli import parser

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "matrix.yml"
SMALL = "eventfd and create"       # a handful of behaviours: seconds, not minutes
PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"
SHELL = ["bash", "--noprofile", "--norc", "-eo", "pipefail"]   # a runner's `run:` shell
STEP_TIMEOUT = 2400


def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def target_jobs() -> list[tuple[str, str]]:
    """(job id, target) for every target a job's matrix runs."""
    return [(job_id, target) for job_id, job in workflow()["jobs"].items()
            for target in job.get("strategy", {}).get("matrix", {}).get("target", [])]


def job_of(target: str) -> str:
    [job_id] = [j for j, t in target_jobs() if t == target]
    return job_id


# -- the emulated runner ----------------------------------------------------------------------

EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


class Unsupported(Exception):
    pass


class Runner:
    """One job of the workflow, for one matrix entry, run here."""

    def __init__(self, job_id: str, matrix: dict, *, inputs: dict, base: Path,
                 artifacts: Path):
        self.job_id, self.job = job_id, workflow()["jobs"][job_id]
        self.matrix, self.inputs = matrix, inputs
        self.workspace = base / f"{job_id}-{'-'.join(matrix.values()) or 'job'}"
        self.temp = base / f"{self.workspace.name}.tmp"
        self.artifacts = artifacts
        self.log: list[str] = []

    # expressions
    def expand(self, text: str) -> str:
        def value(match: re.Match) -> str:
            words = match.group(1).split(".")
            context = {"matrix": self.matrix, "inputs": self.inputs}.get(words[0])
            if context is None or len(words) != 2:
                raise Unsupported(f"the emulated runner does not know ${{{{ "
                                  f"{match.group(1)} }}}}: teach it, or keep it simple")
            return str(context.get(words[1], ""))

        return EXPRESSION.sub(value, str(text))

    def env(self, step: dict) -> dict:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PYTEST_", "HYPOTHESIS_", "KIT_", "GITHUB_", "RUNNER_"))
               and k not in ("VIRTUAL_ENV", "PYTHONPATH", "CI")}
        # nothing of this checkout's venv on PATH: the job makes its own
        env["PATH"] = ":".join([str(self.shims()), *(
            p for p in os.environ.get("PATH", "").split(":") if str(ROOT) not in p)])
        env.update(CI="true", GITHUB_ACTIONS="true", GITHUB_WORKSPACE=str(self.workspace),
                   RUNNER_TEMP=str(self.temp))
        for scope in (self.job.get("env", {}), step.get("env", {})):
            env.update({k: self.expand(v) for k, v in scope.items()})
        return env

    def shims(self) -> Path:
        """`sudo` as on a runner (password-less, to root); here we are root already."""
        shims = self.temp / "shims"
        if not shims.exists():
            shims.mkdir(parents=True)
            sudo = shims / "sudo"
            sudo.write_text('#!/bin/sh\nwhile [ $# -gt 0 ]; do case "$1" in -E|--preserve-env'
                            '*) shift ;; *) break ;; esac; done\nexec "$@"\n')
            sudo.chmod(0o755)
        return shims

    # steps
    def run(self) -> None:
        self.temp.mkdir(parents=True, exist_ok=True)
        self.workspace.mkdir(parents=True, exist_ok=True)
        for step in self.job["steps"]:
            if "uses" in step:
                self.uses(step)
            elif str(step.get("id", "")).startswith("machine-"):
                self.machine(step)
            else:
                self.script(step)

    def uses(self, step: dict) -> None:
        action = step["uses"].split("@")[0]
        args = {k: self.expand(v) for k, v in step.get("with", {}).items()}
        if action == "actions/checkout":
            copy_checkout(self.workspace)
        elif action == "actions/setup-python":
            if args.get("python-version") != PYTHON:
                raise Unsupported(f"the job asks for Python {args.get('python-version')}; "
                                  f"this machine has {PYTHON}")
        elif action == "actions/upload-artifact":
            source = self.workspace / args["path"]
            if source.exists():
                shutil.copytree(source, self.artifacts / args["name"], symlinks=True)
            elif args.get("if-no-files-found", "warn") == "error":
                raise AssertionError(f"upload-artifact: nothing at {args['path']}")
        elif action == "actions/download-artifact":
            into = self.workspace / args.get("path", ".")
            pattern = re.compile(args.get("pattern", "*").replace("*", ".*") + "$")
            for artifact in sorted(self.artifacts.iterdir()):
                if pattern.match(artifact.name):
                    shutil.copytree(artifact, into / artifact.name, symlinks=True)
        else:
            raise Unsupported(f"the emulated runner does not know the action {action}")

    def machine(self, step: dict) -> None:
        """A step that sets up the runner's machine: the packages it installs must be here
        (this machine is set up by ./bootstrap and the kit's own needs); udev and the like
        are the runner's alone."""
        script = self.expand(step["run"])
        self.log.append(f"not run here (the runner's own machine): {step.get('name')}")
        for line in script.splitlines():
            words = shlex.split(line)
            if "install" in words and any(w.endswith("apt-get") for w in words):
                wanted = [w for w in words[words.index("install") + 1:]
                          if not w.startswith("-")]
                missing = [p for p in wanted if subprocess.run(
                    ["dpkg-query", "-W", "-f", "${Status}", p], capture_output=True,
                    text=True, check=False).stdout.split()[-1:] != ["installed"]]
                assert not missing, (f"{step.get('name')}: the runner installs {missing}, "
                                     f"which this machine lacks")

    def script(self, step: dict) -> None:
        script = self.expand(step["run"])
        path = self.temp / f"step-{len(self.log)}.sh"
        path.write_text(script + "\n")
        proc = subprocess.run([*SHELL, str(path)], cwd=self.workspace, env=self.env(step),
                              capture_output=True, text=True, timeout=STEP_TIMEOUT,
                              check=False, stdin=subprocess.DEVNULL)
        self.log.append(f"$ {script}\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
        assert proc.returncode == 0, (f"job {self.job_id} {self.matrix}, step "
                                      f"{step.get('name', script)!r} exited "
                                      f"{proc.returncode}:\n" + "\n".join(self.log))


def copy_checkout(into: Path) -> None:
    """What actions/checkout gives a job: the repository's files (the tracked ones and new
    ones not ignored, as they are now in this working tree), no venv, no caches."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=ROOT, capture_output=True,
                            check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if not source.exists() and not source.is_symlink():
            continue   # deleted in the working tree
        target = into / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)


def container_problem(job: dict) -> str | None:
    """Why this machine cannot stand in for the job's container (None: it can)."""
    container = job.get("container")
    if container is None:
        return None
    image = container["image"] if isinstance(container, dict) else container
    if image != "debian:bookworm":
        return f"the job runs in {image}, which this machine is not"
    release = Path("/etc/debian_version")
    if not release.exists() or not release.read_text().startswith("12"):
        return "the job runs in debian:bookworm; this machine is not Debian 12"
    if os.geteuid() != 0:
        return "the job's container runs as root; this test does not"
    return None


def load_target(name: str):
    from kit.matrix.targets import load_targets

    [target] = load_targets(ROOT / "targets", [name])
    target.repo = ROOT
    return target


def skip_reason(job_id: str, target: str) -> str | None:
    job = workflow()["jobs"][job_id]
    if os.geteuid() != 0:
        return "a runner's sudo is password-less root; this test is not root"
    problem = container_problem(job)
    if problem:
        return problem
    loaded = load_target(target)
    if loaded.kind == "qemu" and os.environ.get("KIT_VM_TESTS") != "1":
        return ("boots a Debian kernel under QEMU: minutes (TCG) for every run; set "
                "KIT_VM_TESTS=1 to run it")
    if loaded.spec.get("platform") == "qemu-user" and os.environ.get("KIT_VM_TESTS") != "1":
        # and it registers binfmt entries that another test of this suite may hold
        return ("runs the suite under qemu-user emulation: 10 minutes or more (plus about "
                "10 to build its userland); set KIT_VM_TESTS=1 to run it")
    return loaded.unavailable()


# -- the workflow's shape ---------------------------------------------------------------------


def test_every_target_file_has_a_job_and_each_once():
    names = sorted(yaml.safe_load(p.read_text())["name"]
                   for p in (ROOT / "targets").glob("*.yaml"))
    assert sorted(t for _, t in target_jobs()) == names


def test_the_target_step_is_the_readmes_command_with_its_default_output():
    default = parser().parse_args(["matrix"]).output
    assert not Path(default).is_absolute()       # what made the guests write nowhere
    assert ".venv/bin/kit matrix" in (ROOT / "README.md").read_text()
    for job_id in {j for j, _ in target_jobs()}:
        steps = workflow()["jobs"][job_id]["steps"]
        [run] = [s["run"] for s in steps if "kit matrix" in s.get("run", "")]
        assert re.search(r'\.venv/bin/kit matrix --only "\$TARGET"', run), run
        assert " -o " not in run and "--output" not in run
        [upload] = [s for s in steps if s.get("uses", "").startswith(
            "actions/upload-artifact")]
        assert upload["with"]["path"] == default


def test_the_emulated_runner_refuses_an_expression_it_does_not_know(tmp_path):
    runner = Runner("merge", {}, inputs={}, base=tmp_path, artifacts=tmp_path)
    assert runner.expand("x ${{ matrix.target }} y") == "x  y"
    with pytest.raises(Unsupported, match="github.sha"):
        runner.expand("${{ github.sha }}")


def test_the_emulated_runner_fails_a_failing_step(tmp_path):
    runner = Runner("merge", {}, inputs={}, base=tmp_path, artifacts=tmp_path)
    runner.workspace.mkdir(parents=True)
    runner.temp.mkdir(parents=True)
    with pytest.raises(AssertionError, match="exited 3"):
        runner.script({"name": "fails", "run": "true\nexit 3"})
    with pytest.raises(AssertionError, match="exited 1"):
        runner.script({"name": "pipefail", "run": "false | true"})


# -- every job, run here ----------------------------------------------------------------------


def test_the_test_suite_job_is_this_suite():
    steps = workflow()["jobs"]["test"]["steps"]
    assert any(s.get("run", "").endswith("bash .ci/run") for s in steps)
    assert (ROOT / ".ci" / "run").read_text().count(".venv/bin/pytest") == 1
    # running it from here would run this very test again
    pytest.skip("the test-suite job runs .ci/run, which runs this suite: not again from it")


@pytest.mark.timeout(3 * STEP_TIMEOUT)
@pytest.mark.parametrize("job_id,target", target_jobs(),
                         ids=[f"{j}/{t}" for j, t in target_jobs()])
def test_the_job_runs_here_as_on_a_runner(job_id, target, tmp_path):
    reason = skip_reason(job_id, target)
    if reason:
        pytest.skip(f"{target}: {reason}")
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    job = Runner(job_id, {"target": target}, inputs={"select": SMALL}, base=tmp_path,
                 artifacts=artifacts)
    job.run()
    report = json.loads((artifacts / f"report-{target}" / target / "report.json")
                        .read_text())
    assert report["target"]["name"] == target and report["behaviours"]
    assert all(re.search(r"eventfd.*create|create.*eventfd", b["id"])
               for b in report["behaviours"]), "inputs.select did not reach kit matrix"
    matrix = json.loads((artifacts / f"report-{target}" / "matrix.json").read_text())
    assert [(t["name"], t["status"]) for t in matrix["targets"]] == [(target, "ran")]
    if target != "host":
        return
    # the merge job, over what the host job uploaded (the others are in their own tests)
    merge = Runner("merge", {}, inputs={"select": SMALL}, base=tmp_path, artifacts=artifacts)
    merge.run()
    page = (merge.workspace / "merged" / "report.html").read_text()
    assert "Syscall conformance" in page and "<th>host</th>" in page
    assert (artifacts / "report-merged" / "report.html").exists()


def step_command(target: str) -> list[str]:
    """The target step's `kit matrix` command for `target`, as words, without sudo, the
    `|| test` that accepts exit code 1 and the optional -k of a manual run."""
    [line] = [s["run"] for s in workflow()["jobs"][job_of(target)]["steps"]
              if "kit matrix" in s.get("run", "")]
    words = shlex.split(line.split("||")[0].replace("${SELECT:+-k \"$SELECT\"}", "")
                        .replace("$TARGET", target))
    while words and (words[0] == "sudo" or words[0].startswith("--preserve-env")):
        words.pop(0)
    return words


@pytest.mark.timeout(900)
def test_the_target_step_works_from_a_directory_that_is_not_the_checkout(tmp_path):
    # before the fix the host target's `kit run` (whose cwd is the checkout) wrote its
    # report beside the specs, and the matrix found none
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "HYPOTHESIS_")) and k != "KIT_PLATFORM"}
    ran = subprocess.run([*step_command("host"), "-k", SMALL], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=800, check=False)
    assert ran.returncode in (0, 1), ran.stdout + ran.stderr
    out = tmp_path / parser().parse_args(["matrix"]).output
    report = json.loads((out / "host" / "report.json").read_text())
    assert report["behaviours"] and report["target"]["name"] == "host"
