"""Run the kit's code paths once, in the process that will fork the checkers.

Hypothesis and the kit import and build some things lazily (the search's later phases,
shrinking, the stateful machinery). The warm-up makes no system call on the target. Done once in the parent, every forked checker
inherits them instead of rebuilding them; a process about to drop privileges also
needs them loaded while it can still read the interpreter's files.
"""

from __future__ import annotations

import importlib
import pkgutil

import kit
from kit.engine.target import Target

# Only `compute` (no system call on the target): a hostile target must not be able to
# hang the process that every checker is forked from.
WARM_UP = """
behaviours:
  - id: warm.up.passes
    title: A passing spec with enough examples to reach every phase of the search
    cite: {page: eventfd(2), section: DESCRIPTION, quote: "returns 8 bytes containing that value"}
    params:
      a: {integers: {min: 1, max: 100}}
      flags: {flag_sets: [EFD_SEMAPHORE, EFD_NONBLOCK]}
    max_examples: 50
    steps:
      - compute: {value: {add: [$a, 1]}}
        expect: {value: {add: [1, $a]}, returns_within: 5}
  - id: warm.up.fails
    title: A failing spec, to load the shrinking and reporting code
    cite: {page: eventfd(2), section: DESCRIPTION, quote: "returns 8 bytes containing that value"}
    params:
      a: {integers: {min: 1, max: 100}}
    steps:
      - compute: {value: $a}
        expect: {value: 0}
"""

_done = False


def warm_up() -> None:
    global _done
    if _done:
        return
    import hypothesis.stateful  # noqa: F401 - the model tests' machinery

    from kit.engine.runner import check_behaviour
    from kit.spec.loader import load_text

    for info in pkgutil.walk_packages(kit.__path__, "kit."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    # After the imports: Hypothesis reads the constants of every module loaded from
    # outside site-packages (the kit's own) once per process, and again whenever more
    # modules were loaded since. Read here, in the parent, the children inherit the
    # result; read in each child, it cost some 20 ms per behaviour.
    target = Target.current()
    for behaviour in load_text(WARM_UP, "warm-up.yaml").behaviours:
        check_behaviour(behaviour, target, profile="default")
    _done = True
