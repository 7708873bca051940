"""Userlands in containers: the same kernel seen through another libc (glibc on Debian,
musl on Alpine). Needs a working container engine (docker or podman)."""

from __future__ import annotations

import shutil
import subprocess

from kit.matrix.base import RunRequest, RunResult, Target


class ContainerTarget(Target):
    kind = "container"

    def engine(self) -> str | None:
        for name in (self.spec.get("engine"), "docker", "podman"):
            if name and shutil.which(name):
                return name
        return None

    def unavailable(self) -> str | None:
        engine = self.engine()
        if engine is None:
            return "no container engine (docker or podman) is installed"
        probe = subprocess.run([engine, "info"], capture_output=True, text=True, check=False,
                               timeout=60)
        if probe.returncode != 0:
            return f"{engine} is installed but no engine answers ({engine} info failed)"
        return None

    @property
    def image(self) -> str:
        return f"kit-{self.name}"

    def prepare(self, log) -> None:
        with open(log, "a") as out:
            subprocess.run([self.engine(), "build", "-f", self.spec["containerfile"], "-t",
                            self.image, "."], cwd=self.repo, stdout=out,
                           stderr=subprocess.STDOUT, check=True, timeout=1800)

    def run(self, request: RunRequest) -> RunResult:
        request.out_dir.mkdir(parents=True, exist_ok=True)
        env = [f"--env={k}={v}" for k, v in request.env.items()]
        cmd = [self.engine(), "run", "--rm", "--network=none", *env,
               f"--volume={request.out_dir}:/out", self.image, "run", "--report", "/out",
               "-n", "1", *request.kit_args]
        return self.run_command(request, cmd, {"how": f"{self.engine()} run {self.image}",
                                               "containerfile": self.spec["containerfile"]})
