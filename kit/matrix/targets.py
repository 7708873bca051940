"""Target descriptions (targets/*.yaml) -> Target objects of the right kind."""

from __future__ import annotations

import importlib
import stat
from pathlib import Path

import yaml

from kit.engine.patch_level import ENV as KERNEL_VERSION_ENV
from kit.engine.patch_level import BadKernelVersion, parse_override
from kit.matrix.apt import suite_problem
from kit.matrix.base import Target
from kit.matrix.paths import name_problem

# kind -> "module:Class"; imported only when a target of that kind is used.
KINDS = {
    "host": "kit.matrix.host:HostTarget",
    "gvisor": "kit.matrix.gvisor:GvisorTarget",
    "qemu": "kit.matrix.qemu:QemuTarget",
    "container": "kit.matrix.container:ContainerTarget",
    "userland": "kit.matrix.userland:UserlandTarget",
}
MAX_TARGET_FILE = 64 * 1024     # a target file is a dozen lines; more is a mistake
# The kernel version the target is judged by, where its kernel does not tell; `assume_kernel`
# is the older spelling (gVisor's first), still read.
KERNEL_VERSION_FIELDS = ("kernel_version", "assume_kernel")


class TargetFileError(Exception):
    """A target file that cannot be used; names the file, and the line and field if any."""

    def __init__(self, message: str, *, file: Path | str | None = None, line: int = 0,
                 field: str | None = None):
        self.message, self.file, self.line, self.field = message, file, line, field
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.file is None:
            return self.message
        where = f"{self.file}:{self.line}" if self.line else str(self.file)
        if self.field:
            where += f": field {self.field}"
        return f"{where}: {self.message}"


def _read(path: Path) -> str:
    """The file's text; only a regular file of bounded size (a FIFO would block)."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise TargetFileError("not a regular file", file=path)
        if info.st_size > MAX_TARGET_FILE:
            raise TargetFileError(f"{info.st_size} bytes; a target file has at most "
                                  f"{MAX_TARGET_FILE}", file=path)
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise TargetFileError(str(exc), file=path) from None


def _line_of(text: str, field: str) -> int:
    """The line of `field`'s value in a top-level mapping (0 if not found)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return 0
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == field:
                return value.start_mark.line + 1
    return 0


def kernel_override(spec: dict) -> str:
    """The target's kernel version override ('' for none), from a checked target spec."""
    for name in KERNEL_VERSION_FIELDS:
        if spec.get(name):
            return str(spec[name]).strip()
    return ""


def target_env(target: Target) -> dict:
    """What a target's run of `kit run` gets in its environment: its name, its platform
    (known deviations name it) and, where the kernel does not tell its version (gVisor) or
    the kit cannot read it, the version to judge it by."""
    env = {"KIT_TARGET_NAME": target.name,
           "KIT_PLATFORM": target.spec.get("platform",
                                           target.kind if target.kind != "host" else "linux")}
    if kernel_override(target.spec):
        env[KERNEL_VERSION_ENV] = kernel_override(target.spec)
    return env


def _check_kernel_version(spec: dict, text: str, path: Path) -> None:
    given = [name for name in KERNEL_VERSION_FIELDS if name in spec]
    if len(given) > 1:
        raise TargetFileError("`assume_kernel` is the older name of `kernel_version`: give "
                              "one of them", file=path, line=_line_of(text, given[1]),
                              field=given[1])
    for name in given:
        value = spec[name]
        where = {"file": path, "line": _line_of(text, name), "field": name}
        if isinstance(value, (int, float)):
            # YAML reads 5.10 as the number 5.1: refuse it rather than judge another kernel
            raise TargetFileError(f"{value!r} is a number to YAML; quote the version "
                                  f"(\"5.10\" unquoted reads as 5.1)", **where)
        try:
            parse_override(value, "kernel version")
        except BadKernelVersion as exc:
            raise TargetFileError(str(exc).removeprefix("kernel version: "), **where) from None


def load_target(path: Path) -> Target:
    text = _read(path)
    try:
        spec = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise TargetFileError(str(exc), file=path,
                              line=mark.line + 1 if mark else 0) from None
    if not isinstance(spec, dict) or "name" not in spec or "kind" not in spec:
        raise TargetFileError("a target file needs `name` and `kind`", file=path)
    problem = name_problem(spec["name"])
    if problem:
        raise TargetFileError(problem, file=path, line=_line_of(text, "name"), field="name")
    if spec["kind"] not in KINDS:
        raise TargetFileError(f"unknown kind {spec['kind']!r} (one of "
                              f"{', '.join(sorted(KINDS))})", file=path,
                              line=_line_of(text, "kind"), field="kind")
    _check_kernel_version(spec, text, path)
    if "suite" in spec and suite_problem(spec["suite"]):
        raise TargetFileError(suite_problem(spec["suite"]), file=path,
                              line=_line_of(text, "suite"), field="suite")
    module, _, cls = KINDS[spec["kind"]].partition(":")
    target = getattr(importlib.import_module(module), cls)(spec["name"], spec)
    target.source = (path, _line_of(text, "name"))
    return target


def load_targets(directory: Path, names: list[str] | None = None) -> list[Target]:
    targets = [load_target(p) for p in sorted(directory.glob("*.yaml"))]
    first: dict[str, Target] = {}
    for target in targets:
        if target.name in first:
            path, line = target.source
            raise TargetFileError(f"target name {target.name!r} is already used by "
                                  f"{first[target.name].source[0]}", file=path, line=line,
                                  field="name")
        first[target.name] = target
    if names:
        unknown = set(names) - set(first)
        if unknown:
            raise TargetFileError(f"no target named {', '.join(sorted(unknown))} in "
                                  f"{directory}")
        targets = [t for t in targets if t.name in names]
    return targets
