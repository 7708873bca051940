"""Validated specs as plain data objects: what the interpreter and reports consume."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# What backs a claim: the man page itself, or the kernel's code / a selftest where the page is
# silent or looser than Linux (reports and `kit list` show the two apart).
BASES = ("documented", "implementation")


@dataclass(frozen=True)
class Citation:
    page: str
    section: str
    quote: str
    source: str | None = None
    basis: str = "documented"

    def __str__(self) -> str:
        return f'{self.page}, {self.section}: "{self.quote}"'


@dataclass(frozen=True)
class Change:
    """A kernel change a rule depends on: the commit, the first mainline release that has
    it, and the first release of each stable series that carries a backport (so that a
    gate holds on 6.1.149 as on 6.17). Whether a kernel carries it: kit.spec.changes."""

    subject: str
    commit: str                    # "" when the mainline id is not confirmed
    release: str
    backports: tuple[str, ...] = ()
    note: str = ""                 # what could not be confirmed, e.g. another series' backport


@dataclass(frozen=True)
class DocumentationDefect:
    """Where the page and every kernel disagree: the steps check what the kernel does (so a
    kernel that changes fails them), and reports show the page's claim as the defect."""

    claim: str                     # what the page says
    kernel_does: str               # what every kernel does instead
    evidence: str                  # the kernel source that shows it
    since: str = ""                # since when the kernel does so


@dataclass(frozen=True)
class Applicability:
    kernel: str | None = None
    since: Change | None = None    # the behaviour exists on kernels that carry this change
    before: Change | None = None   # ... or only on kernels that lack it
    arch: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()
    without_capabilities: tuple[str, ...] = ()
    syscalls: tuple[str, ...] = ()
    # kernel build options that must be set: each entry is the symbols any one of which will
    # do (a plain `CONFIG_X` in the spec is a one-symbol entry)
    kernel_config: tuple[tuple[str, ...], ...] = ()
    # kernel build options that must not be set (a fallback documented for kernels without)
    without_kernel_config: tuple[str, ...] = ()


@dataclass(frozen=True)
class Variant:
    """An expectation that replaces the default one on some kernels."""

    kernel: str | None
    expect: dict
    reason: str
    since: Change | None = None    # on kernels that carry this change
    before: Change | None = None   # on kernels that lack it


@dataclass
class Step:
    action: str                    # an operation name, or in_thread / join / in_child / sleep /
                                   # wait_blocked
    args: Any                      # operation arguments, or the control word's payload
    line: int
    bind: str | None = None
    expect: dict | None = None
    differs: list[Variant] = field(default_factory=list)
    within: float | None = None
    substeps: list["Step"] = field(default_factory=list)
    after: float = 0.0
    when_blocked: bool | str = False  # in_thread: first wait until the spawner ("child":
                                      # the in_child process) blocks


@dataclass(frozen=True)
class KnownDeviation:
    """What a target is known to do instead of the documented behaviour: one failure, keyed
    by where it happens and what is seen there, so that another failure is not excused."""

    reason: str
    kernel: str | None = None
    platform: str | None = None
    arch: tuple[str, ...] = ()     # on these ABIs only (i386: a 32-bit process, compat calls)
    since: Change | None = None    # on kernels that carry this change (a regression)
    before: Change | None = None   # on kernels that lack it (the fix)
    # Step behaviours: the step that differs (an `as` name, OP or OP#N, see kit.spec.locate)
    # and what it gives there, as an expectation the actual result meets ({"timeout": True}:
    # it does not return within its bound).
    step: str | None = None
    observed: dict | None = None
    # Model behaviours: the operation that disagrees and a regular expression searched in
    # the disagreement.
    operation: str | None = None
    disagreement: str | None = None
    line: int = 0


@dataclass
class Behaviour:
    id: str
    title: str
    cite: Citation
    file: str
    line: int
    family: str
    applies: Applicability = Applicability()
    params: dict[str, dict] = field(default_factory=dict)
    assume: list[dict] = field(default_factory=list)
    examples: list[dict] = field(default_factory=list)
    max_examples: int | None = None
    steps: list[Step] = field(default_factory=list)
    untestable: str | None = None
    model: str | None = None       # a reference model from kit.model, instead of steps
    # machine-wide state (e.g. realtime_clock) that no other behaviour may use meanwhile
    exclusive: tuple[str, ...] = ()
    # sysctls the behaviour changes (kit.engine.machine_wide): run only when allowed
    machine_wide: tuple[str, ...] = ()
    known_deviations: list[KnownDeviation] = field(default_factory=list)
    documentation_defect: DocumentationDefect | None = None
    source: str = ""               # the behaviour's YAML as written, for reports
