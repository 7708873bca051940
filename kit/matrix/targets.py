"""Target descriptions (targets/*.yaml) -> Target objects of the right kind."""

from __future__ import annotations

import importlib
from pathlib import Path

import yaml

from kit.matrix.base import Target

# kind -> "module:Class"; imported only when a target of that kind is used.
KINDS = {
    "host": "kit.matrix.host:HostTarget",
    "gvisor": "kit.matrix.gvisor:GvisorTarget",
    "qemu": "kit.matrix.qemu:QemuTarget",
    "container": "kit.matrix.container:ContainerTarget",
}


class TargetFileError(Exception):
    pass


def load_target(path: Path) -> Target:
    try:
        spec = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise TargetFileError(f"{path}: {exc}") from None
    if not isinstance(spec, dict) or "name" not in spec or "kind" not in spec:
        raise TargetFileError(f"{path}: a target file needs `name` and `kind`")
    if spec["kind"] not in KINDS:
        raise TargetFileError(f"{path}: unknown kind {spec['kind']!r} "
                              f"(one of {', '.join(sorted(KINDS))})")
    module, _, cls = KINDS[spec["kind"]].partition(":")
    return getattr(importlib.import_module(module), cls)(spec["name"], spec)


def load_targets(directory: Path, names: list[str] | None = None) -> list[Target]:
    targets = [load_target(p) for p in sorted(directory.glob("*.yaml"))]
    if names:
        unknown = set(names) - {t.name for t in targets}
        if unknown:
            raise TargetFileError(f"no target named {', '.join(sorted(unknown))} in "
                                  f"{directory}")
        targets = [t for t in targets if t.name in names]
    return targets
