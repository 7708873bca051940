"""Spec file -> validated Behaviours, or SpecErrors that name file, line, id and field.

A broken behaviour never hides its neighbours: schema errors are grouped per
behaviour, and only a file that is broken as a whole fails whole. A file is read only if it
is a regular file of bounded size (a FIFO or /dev/zero among the specs must not hang a
command), and a behaviour id may appear once in the whole spec set.
"""

from __future__ import annotations

import difflib
import errno as _errno
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from jsonschema.exceptions import best_match
from packaging.specifiers import InvalidSpecifier, SpecifierSet

from kit.confinement import refusal
from kit.model import MODEL_OPERATIONS
from kit.registry import CONSTANTS, OPERATIONS
from kit.spec import changes, locate, patterns, validated
from kit.spec import expressions as ex
from kit.spec.errors import SpecError
from kit.spec.model import (
    Applicability,
    Behaviour,
    Change,
    Citation,
    DocumentationDefect,
    KnownDeviation,
    Step,
    Variant,
)
from kit.spec.ranges import Impossible, check_possible
from kit.spec.schema import (
    CONTROL,
    GROUP_KINDS,
    ITERATION,
    ONLY_GROUP_KINDS,
    ORDER_KINDS,
    PROFILE_NAMES,
    WAITER_INDEX,
    build_schema,
)
from kit.spec.source import TooLarge, line_of, load_yaml

_VALIDATOR = jsonschema.Draft202012Validator(build_schema())
# Every errno name, aliases included (EWOULDBLOCK, EOPNOTSUPP, EDEADLOCK...).
_ERRNOS = {name for name in dir(_errno) if name.startswith("E") and name.isupper()}
# Bytes in one spec file; the largest today is about 20 KB.
MAX_FILE_BYTES = 1 << 20


@dataclass
class LoadResult:
    path: str
    behaviours: list[Behaviour] = field(default_factory=list)
    errors: list[SpecError] = field(default_factory=list)


def _field(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top)"


def _schema_error(err: jsonschema.ValidationError, doc, file: str, base: list) -> SpecError:
    path = list(err.absolute_path)
    message = err.message
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        extras = [k for k in err.instance if k not in err.schema.get("properties", {})]
        if extras:
            path = path + [extras[0]]
            known = list(err.schema.get("properties", {}))
            close = difflib.get_close_matches(str(extras[0]), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            what = "operation or step key" if "expect" in known else "field"
            message = f"unknown {what} {extras[0]!r}{hint}"
    if err.validator == "required":
        missing = re.search(r"'([^']+)' is a required property", err.message)
        if missing:
            path = path + [missing.group(1)]
            message = f"missing required field {missing.group(1)!r}"
    if err.validator == "oneOf" and isinstance(err.instance, dict) and "id" in err.instance:
        present = [k for k in ("steps", "untestable", "model") if k in err.instance]
        message = (f"a behaviour has exactly one of steps, untestable or model; "
                   f"this one has {', '.join(present) or 'none'}")
    if path[2:4] == ["applies", "kernel_config"] and path[0] == "behaviours":
        # the anyOf of the schema alone would say "not valid under any of the given schemas"
        message = (f"kernel_config is a list of kernel options, each a symbol such as "
                   f"CONFIG_KCMP, or {{any: [CONFIG_A, CONFIG_B, ...]}} when any one will do; "
                   f"got {typed(err.instance)!r}")
    ordered = _ordered_kind_at(path)
    if ordered is not None:
        # the anyOf of a bound would otherwise say "not valid under any of the given
        # schemas", or point inside a mapping that was never meant as one
        path = path[:ordered + 1]
        kind = path[-1]
        form = "[LO, HI]: two bounds, each" if kind == "between" else "one bound:"
        message = (f"{kind} takes {form} a number, a $reference, a CONSTANT or one "
                   f"arithmetic form such as {{sub: [$x, 1]}}; got {typed(_at(doc, path))!r}")
    behaviour_id = None
    if len(path) >= 2 and path[0] == "behaviours" and isinstance(doc, dict):
        try:
            behaviour_id = doc["behaviours"][path[1]].get("id")
        except (IndexError, AttributeError, KeyError):
            pass
    inner = path[2:] if len(path) >= 2 and path[0] == "behaviours" else path
    return SpecError(message, file=file, line=line_of(doc, base + path),
                     behaviour=behaviour_id, field=_field(inner))


def _ordered_kind_at(path: list) -> int | None:
    """Where in an error's path an at_least / at_most / between expectation starts, if any:
    a kind directly under `expect`, nested in `fields`, or blocks' own at_least."""
    for i, part in enumerate(path):
        if part in ORDER_KINDS and i >= 2 and (path[i - 1] in ("expect", "blocks") or
                                                path[i - 2] == "fields"):
            return i
    return None


def _at(doc, path: list) -> Any:
    for part in path:
        doc = doc[part]
    return doc


class _Checker:
    """Checks a schema-valid behaviour for what a schema cannot express."""

    def __init__(self, raw: dict, file: str):
        self.raw, self.file = raw, file
        self.bid = raw.get("id")

    def fail(self, message: str, node, key, field_name: str) -> SpecError:
        lines = getattr(node, "lines", {})
        line = lines.get(key, getattr(node, "line", 0)) if key is not None else getattr(
            node, "line", 0)
        return SpecError(message, file=self.file, line=line, behaviour=self.bid,
                         field=field_name)

    def expr(self, value, bound: set[str], node, key, field_name: str) -> None:
        for leaf in ex.walk(value):
            ref = ex.REF.match(leaf)
            if ref and ref.group(1) not in bound:
                raise self.fail(f"${ref.group(1)} is not a parameter or an earlier step's "
                                f"`as` name", node, key, field_name)
            if not ref and ex.NAME.match(leaf) and leaf not in CONSTANTS:
                close = difflib.get_close_matches(leaf, list(CONSTANTS), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise self.fail(f"unknown constant {leaf}{hint}", node, key, field_name)

    def confined(self, action: str, args: dict, where: str) -> None:
        """A path or command the spec gives literally is checked now; computed ones are
        checked when the step runs (kit.confinement)."""
        literal = {}
        for arg, value in args.items():
            kind = OPERATIONS[action].args[arg]
            if kind == "str" and not str(value).startswith("$"):
                literal[arg] = typed(value)
            elif kind != "str":
                try:
                    value = ex.evaluate(value, {})
                except (ex.UnboundReference, TypeError):
                    continue
                if isinstance(value, int):
                    literal[arg] = int(value)
        refused = refusal(action, literal)
        if refused:
            arg, reason = refused
            raise self.fail(f"refused: {reason}", args, arg, f"{where}.{action}.{arg}")

    def kernel(self, text: str, node, key, field_name: str) -> None:
        try:
            SpecifierSet(text)
        except InvalidSpecifier:
            raise self.fail(f"invalid kernel range {text!r} (write e.g. '>=6.9' or "
                            f"'>=2.6.27,<6.9')", node, key, field_name) from None

    def change(self, node, key: str, field_name: str) -> Change | None:
        """The kernel change under node[key] (`since` / `before`), checked: a release that is
        no release, or backports that are no stable releases of older series, are errors
        naming the entry."""
        raw = node.get(key)
        if raw is None:
            return None
        change = Change(raw["subject"], raw.get("commit", ""), str(raw["release"]),
                        tuple(str(b) for b in raw.get("backports", ())), raw.get("note", ""))
        try:
            changes.check(change)
        except changes.BadChange as exc:
            if isinstance(exc.key, tuple):
                name, index = exc.key
                raise self.fail(exc.message, raw[name], index,
                                f"{field_name}.{name}[{index}]") from None
            raise self.fail(exc.message, raw, exc.key, f"{field_name}.{exc.key}") from None
        return change

    def expect(self, expect: dict, bound: set[str], field_name: str) -> None:
        for key, value in expect.items():
            if key == "errno":
                for name in [value] if isinstance(value, str) else value:
                    if name not in _ERRNOS:
                        raise self.fail(f"unknown errno {name}", expect, key,
                                        f"{field_name}.errno")
            elif key == "fields":
                self.fields(value, bound, f"{field_name}.fields")
            elif key == "matches":
                self.pattern(value, expect, key, f"{field_name}.matches")
            else:
                self.expr(value, bound, expect, key, f"{field_name}.{key}")

    def pattern(self, text: str, node, key, field_name: str) -> None:
        try:
            patterns.compiled(text)
        except patterns.regex.error as exc:
            raise self.fail(f"invalid regular expression {text!r}: {exc.msg}"
                            + (f" at position {exc.pos}" if exc.pos is not None else ""),
                            node, key, field_name) from None

    def fields(self, fields: dict, bound: set[str], field_name: str) -> None:
        """Field expectations: a value (expression) or a nested expectation."""
        for name, want in fields.items():
            where = f"{field_name}.{name}"
            if isinstance(want, dict) and not ex.is_arithmetic(want):
                for key, inner in want.items():
                    if key == "fields":
                        self.fields(inner, bound, f"{where}.fields")
                    elif key == "matches":
                        self.pattern(inner, want, key, f"{where}.matches")
                    elif key != "present":
                        self.expr(inner, bound, want, key, f"{where}.{key}")
            else:
                self.expr(want, bound, fields, name, where)

    def _inner_name(self, name: str, bound: set[str], raw, key: str, where: str) -> set[str]:
        if name in bound:
            raise self.fail(f"{key} binds ${name} inside its steps, but {name!r} is already "
                            f"bound (rename that parameter or `as`)", raw, key, where)
        return set(bound) | {name}

    def steps(self, steps: list, bound: set[str], prefix: str,
              threads: dict[str, set[str]], groups: set[str] | None = None) -> list[Step]:
        groups = set() if groups is None else groups
        out = []
        for i, raw in enumerate(steps):
            where = f"{prefix}[{i}]"
            actions = [k for k in raw if k in OPERATIONS or k in CONTROL]
            if len(actions) != 1:
                raise self.fail(f"a step needs exactly one operation, found "
                                f"{actions or 'none'}", steps, i, where)
            action = actions[0]
            args = raw[action]
            step = Step(action=action, args=args, line=raw.line, bind=raw.get("as"),
                        within=raw.get("within"))
            if action in OPERATIONS:
                for arg, value in (args or {}).items():
                    if OPERATIONS[action].args[arg] != "str":
                        self.expr(value, bound, args, arg, f"{where}.{action}.{arg}")
                self.confined(action, args or {}, where)
            elif action == "in_thread":
                if not step.bind:
                    raise self.fail("in_thread needs `as: NAME` so a later join can name it",
                                    steps, i, where)
                step.after = args.get("after", 0.0)
                step.when_blocked = args.get("when_blocked", False)
                inner = set(bound)
                step.substeps = self.steps(args["steps"], inner, f"{where}.in_thread.steps", {})
                threads[step.bind] = inner - bound  # names that come back at the join
            elif action == "in_child":
                step.substeps = self.steps(args["steps"], set(bound), f"{where}.in_child.steps",
                                           {})
            elif action == "join":
                if args not in threads:
                    raise self.fail(f"join names {args!r}, which no earlier in_thread started",
                                    raw, "join", f"{where}.join")
                bound |= threads.pop(args)
            elif action == "waiters":
                if not step.bind:
                    raise self.fail("waiters needs `as: NAME` so a later woken can name the "
                                    "group", steps, i, where)
                self.expr(args["count"], bound, args, "count", f"{where}.waiters.count")
                inner = self._inner_name(WAITER_INDEX, bound, raw, "waiters", f"{where}.waiters")
                step.substeps = self.steps(args["steps"], inner, f"{where}.waiters.steps", {})
                groups.add(step.bind)
            elif action == "woken":
                if args not in groups:
                    raise self.fail(f"woken names {args!r}, which no earlier waiters step "
                                    f"started (here, outside a repeat it is not in)",
                                    raw, "woken", f"{where}.woken")
                for key in raw.get("expect") or {}:
                    if key not in GROUP_KINDS:
                        raise self.fail(f"a woken step expects {', '.join(GROUP_KINDS)}; "
                                        f"{key!r} is for operations", raw["expect"], key,
                                        f"{where}.expect.{key}")
                if raw.get("differs"):
                    raise self.fail("woken has no kernel-specific variants", raw, "differs",
                                    f"{where}.differs")
            elif action == "repeat":
                inner = self._inner_name(ITERATION, bound, raw, "repeat", f"{where}.repeat")
                loop_threads: dict[str, set[str]] = {}
                step.substeps = self.steps(args["steps"], inner, f"{where}.repeat.steps",
                                           loop_threads)
                if loop_threads:
                    name = next(iter(loop_threads))
                    raise self.fail(f"in_thread {name!r} is started inside the repeat but never "
                                    f"joined there (each iteration must end its threads)",
                                    raw, "repeat", f"{where}.repeat")
            elif action == "wait_blocked":
                step.args = [args] if isinstance(args, str) else list(args)
                for name in step.args:
                    if name not in threads:
                        raise self.fail(f"wait_blocked names {name!r}, which is not a running "
                                        f"in_thread (start it first, and before its join)",
                                        raw, "wait_blocked", f"{where}.wait_blocked")
            if action != "woken":
                for key in raw.get("expect") or {}:
                    if key in ONLY_GROUP_KINDS:
                        raise self.fail(f"{key} is for a woken step (who of a waiters group "
                                        f"woke), not for {action}", raw["expect"], key,
                                        f"{where}.expect.{key}")
            if raw.get("expect"):
                step.expect = raw["expect"]
                self.expect(step.expect, bound | ({step.bind} if step.bind else set()),
                            f"{where}.expect")
            for j, variant in enumerate(raw.get("differs", [])):
                at = f"{where}.differs[{j}]"
                if "kernel" in variant:
                    self.kernel(variant["kernel"], variant, "kernel", f"{at}.kernel")
                self.expect(variant["expect"], bound, f"{at}.expect")
                step.differs.append(Variant(variant.get("kernel"), variant["expect"],
                                            variant["reason"],
                                            since=self.change(variant, "since", f"{at}.since"),
                                            before=self.change(variant, "before",
                                                               f"{at}.before")))
            if (raw.get("expect") or raw.get("differs")) and action in ("join", "sleep",
                                                                         "in_thread",
                                                                         "wait_blocked",
                                                                         "waiters", "repeat"):
                raise self.fail(f"{action} produces nothing to expect", raw, "expect", where)
            if step.bind:
                if step.bind in bound:
                    raise self.fail(f"name {step.bind!r} is already bound", raw, "as",
                                    f"{where}.as")
                bound.add(step.bind)
            out.append(step)
        return out

    def known_deviation(self, dev: dict, where: str, steps: list[Step],
                        params: set[str]) -> KnownDeviation:
        """A known deviation names one failure: a step of this behaviour and what it gives
        there, or for a model behaviour an operation and a pattern of the disagreement."""
        if "model" in self.raw:
            wanted, other = ("operation", "disagreement"), ("step", "observed")
        elif "steps" in self.raw:
            wanted, other = ("step", "observed"), ("operation", "disagreement")
        else:
            raise self.fail("an untestable behaviour has no deviations to know", dev, None,
                            where)
        kind = "model" if "model" in self.raw else "step"
        for key in other:
            if key in dev:
                raise self.fail(f"{key} is for {'model' if kind == 'step' else 'step'} "
                                f"behaviours; a {kind} behaviour's known deviation gives "
                                f"{' and '.join(wanted)}", dev, key, f"{where}.{key}")
        for key in wanted:
            if key not in dev:
                raise self.fail(f"missing required field {key!r}: a known deviation says "
                                f"where the target differs and what it does instead",
                                dev, None, f"{where}.{key}")
        if kind == "model":
            if dev["operation"] not in MODEL_OPERATIONS:
                close = difflib.get_close_matches(dev["operation"], MODEL_OPERATIONS, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise self.fail(f"unknown model operation {dev['operation']!r}{hint}", dev,
                                "operation", f"{where}.operation")
            self.pattern(dev["disagreement"], dev, "disagreement", f"{where}.disagreement")
        else:
            names = locate.locators(steps)
            if dev["step"] not in names:
                many = locate.ambiguous(steps, dev["step"])
                why = (f"{dev['step']} is called {many} times: name one as "
                       f"{dev['step']}#1 to {dev['step']}#{many}, or by its `as` name"
                       if many > 1 else
                       f"no step is named {dev['step']!r} (an `as` name, an operation called "
                       f"once, or OPERATION#N)")
                raise self.fail(why, dev, "step", f"{where}.step")
            observed = dev["observed"]
            if "timeout" in observed and len(observed) > 1:
                raise self.fail("timeout: true stands alone (a step that does not return "
                                "gives no result to describe)", dev, "observed",
                                f"{where}.observed")
            if "timeout" not in observed:
                # only parameters: an `as` value is not kept once the run has failed
                self.expect(observed, params, f"{where}.observed")
        return KnownDeviation(dev["reason"], dev.get("kernel"), dev.get("platform"),
                              arch=tuple(dev.get("arch", ())),
                              since=self.change(dev, "since", f"{where}.since"),
                              before=self.change(dev, "before", f"{where}.before"),
                              step=dev.get("step"),
                              observed=dict(dev["observed"]) if kind == "step" else None,
                              operation=dev.get("operation"),
                              disagreement=dev.get("disagreement"), line=dev.line)

    def behaviour(self, family: str, source: str) -> Behaviour:
        raw = self.raw
        params = raw.get("params", {})
        bound: set[str] = set()
        for name, spec in params.items():
            if name in PROFILE_NAMES:
                raise self.fail(f"${name} is {PROFILE_NAMES[name]}, bound in every example: "
                                f"name this parameter otherwise", params, name,
                                f"params.{name}")
            self.expr(spec, bound, params, name, f"params.{name}")
            bound.add(name)
        for i, pred in enumerate(raw.get("assume", [])):
            self.expr(pred, bound, raw["assume"], i, f"assume[{i}]")
        try:
            check_possible(params, raw.get("assume", []))
        except Impossible as exc:
            kind, key = exc.where
            node = params if kind == "params" else raw["assume"]
            raise self.fail(exc.message, node, key, f"{kind}.{key}" if kind == "params"
                            else f"{kind}[{key}]") from None
        for i, example in enumerate(raw.get("examples", [])):
            missing = set(params) ^ set(example)
            if missing:
                raise self.fail(f"an example must give exactly the parameters "
                                f"{sorted(params)}; differs in {sorted(missing)}",
                                raw["examples"], i, f"examples[{i}]")
        applies = raw.get("applies", {})
        if "kernel" in applies:
            self.kernel(applies["kernel"], applies, "kernel", "applies.kernel")
        for i, dev in enumerate(raw.get("known_deviations", [])):
            if "kernel" in dev:
                self.kernel(dev["kernel"], dev, "kernel", f"known_deviations[{i}].kernel")
        steps = self.steps(raw["steps"], bound | set(PROFILE_NAMES), "steps", {}) \
            if "steps" in raw else []
        known = [self.known_deviation(dev, f"known_deviations[{i}]", steps, set(params))
                 for i, dev in enumerate(raw.get("known_deviations", []))]
        defect = raw.get("documentation_defect")
        if defect is not None and "steps" not in raw:
            raise self.fail("a documentation defect is checked by steps that hold the kernel "
                            "to what it does: give steps", raw, "documentation_defect",
                            "documentation_defect")
        cite = raw["cite"]
        basis = cite.get("basis", "documented")
        if basis == "implementation" and not cite.get("source"):
            # a claim beyond the page must say where Linux's behaviour comes from
            raise self.fail("basis: implementation needs cite.source naming the kernel code "
                            "or selftest it rests on", cite, "basis", "cite.basis")
        return Behaviour(
            id=raw["id"], title=raw["title"], file=self.file, line=raw.line, family=family,
            cite=Citation(cite["page"], cite["section"], cite["quote"], cite.get("source"),
                          basis),
            applies=Applicability(
                kernel=applies.get("kernel"),
                since=self.change(applies, "since", "applies.since"),
                before=self.change(applies, "before", "applies.before"),
                arch=tuple(applies.get("arch", ())),
                capabilities=tuple(applies.get("capabilities", ())),
                without_capabilities=tuple(applies.get("without_capabilities", ())),
                syscalls=tuple(applies.get("syscalls", ())),
                kernel_config=tuple((e,) if isinstance(e, str) else tuple(e["any"])
                                    for e in applies.get("kernel_config", ())),
                without_kernel_config=tuple(applies.get("without_kernel_config", ()))),
            params=dict(params), assume=list(raw.get("assume", [])),
            examples=[dict(e) for e in raw.get("examples", [])],
            max_examples=raw.get("max_examples"), steps=steps, untestable=raw.get("untestable"),
            model=raw.get("model"), exclusive=tuple(raw.get("exclusive", ())),
            machine_wide=tuple(raw.get("machine_wide", ())),
            known_deviations=known,
            documentation_defect=DocumentationDefect(
                defect["claim"], defect["kernel_does"], defect["evidence"],
                defect.get("since", "")) if defect else None,
            source=source)


def _source_slices(text: str, starts: list[int]) -> list[str]:
    lines = text.splitlines()
    ends = starts[1:] + [len(lines) + 1]
    return ["\n".join(lines[s - 1:e - 1]).rstrip() for s, e in zip(starts, ends)]


def load_text(text: str, file: str) -> LoadResult:
    result = LoadResult(file)
    if len(text) > MAX_FILE_BYTES:
        result.errors.append(SpecError(f"larger than {MAX_FILE_BYTES} bytes: not read as a "
                                       f"spec", file=file, line=1))
        return result
    try:
        doc = load_yaml(text)
    except TooLarge as exc:
        result.errors.append(SpecError(f"not loaded: {exc.message}", file=file, line=exc.line))
        return result
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        result.errors.append(SpecError(f"not valid YAML: {problem}", file=file,
                                       line=mark.line + 1 if mark else 0))
        return result
    if not isinstance(doc, dict) or not isinstance(doc.get("behaviours"), list):
        result.errors.append(SpecError("a spec file is a mapping with a `behaviours` list",
                                       file=file, line=getattr(doc, "line", 1)))
        return result
    per_behaviour: dict[int, list] = {}
    if not validated.passed(text):
        for err in _VALIDATOR.iter_errors(doc):
            path = list(err.absolute_path)
            if len(path) >= 2 and path[0] == "behaviours":
                per_behaviour.setdefault(path[1], []).append(err)
            else:
                result.errors.append(_schema_error(best_match([err]), doc, file, []))
        if result.errors:
            return result
        if not per_behaviour:
            validated.remember(text)
    family = doc.get("family") or Path(file).parent.name
    behaviours = doc["behaviours"]
    sources = _source_slices(text, [getattr(b, "line", 1) for b in behaviours])
    seen: dict[str, int] = {}
    for i, raw in enumerate(behaviours):
        if i in per_behaviour:
            result.errors.append(_schema_error(best_match(per_behaviour[i]), doc, file, []))
            continue
        try:
            behaviour = _Checker(raw, file).behaviour(family, sources[i])
        except SpecError as exc:
            result.errors.append(exc)
            continue
        if behaviour.id in seen:
            result.errors.append(SpecError(f"duplicate id (first at line {seen[behaviour.id]})",
                                           file=file, line=raw.line, behaviour=behaviour.id,
                                           field="id"))
            continue
        seen[behaviour.id] = raw.line
        result.behaviours.append(behaviour)
    return result


class NotReadable(Exception):
    pass


def read_spec(path: Path) -> str:
    """The text of a regular file of at most MAX_FILE_BYTES; NotReadable otherwise.

    Opened without blocking and checked on the open descriptor: a FIFO would block the
    open and the read, /dev/zero would never end, and a check of the path before opening
    could be raced."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise NotReadable(f"cannot read: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotReadable(f"not a regular file ({_file_kind(mode)}): not read as a spec")
        chunks, size = [], 0
        while size <= MAX_FILE_BYTES:
            chunk = os.read(fd, MAX_FILE_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_FILE_BYTES:
            raise NotReadable(f"larger than {MAX_FILE_BYTES} bytes: not read as a spec")
        return b"".join(chunks).decode("utf-8")
    except OSError as exc:
        raise NotReadable(f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise NotReadable(f"not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    finally:
        os.close(fd)


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a regular file"


def load_file(path: Path | str) -> LoadResult:
    path = Path(path)
    try:
        text = read_spec(path)
    except NotReadable as exc:
        return LoadResult(str(path), errors=[SpecError(str(exc), file=str(path), line=1)])
    try:
        return load_text(text, str(path))
    except Exception as exc:  # noqa: BLE001 - a loader bug costs this file, not the others
        return LoadResult(str(path), errors=[SpecError(
            f"kit error while loading this file: {type(exc).__name__}: {exc}",
            file=str(path), line=1)])


def spec_files(root: Path | str) -> list[Path]:
    """The spec files under `root` (or `root` itself, when it is not a directory: read, it
    is refused if it is not a regular file). Like pytest's collection, only entries that
    are regular files (after symlinks) are taken: a FIFO is not a spec."""
    root = Path(root)
    if not root.is_dir():
        return [root]
    return sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


def load_tree(*roots: Path | str) -> list[LoadResult]:
    """Every spec file under the roots (each file once), with duplicate ids across files
    turned into errors (see unique_ids)."""
    seen: set[Path] = set()
    results = []
    for root in roots:
        for path in spec_files(root):
            key = path.resolve()
            if key not in seen:
                seen.add(key)
                results.append(load_file(path))
    unique_ids(results)
    return results


def duplicate_error(behaviour: Behaviour, first: Behaviour) -> SpecError:
    return SpecError(f"duplicate id: already defined at {first.file}:{first.line}",
                     file=behaviour.file, line=behaviour.line, behaviour=behaviour.id,
                     field="id")


def unique_ids(results: list[LoadResult]) -> None:
    """An id defined in two files: the later one (in load order) becomes an error naming
    the first, in place, so every command reports the same thing."""
    first: dict[str, Behaviour] = {}
    for result in results:
        kept = []
        for behaviour in result.behaviours:
            if behaviour.id in first:
                result.errors.append(duplicate_error(behaviour, first[behaviour.id]))
            else:
                first[behaviour.id] = behaviour
                kept.append(behaviour)
        result.behaviours = kept


def typed(value: Any) -> Any:
    """Strip the line-tracking subclasses, for JSON and Hypothesis output."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)  # e.g. a FlagSet: reports and replays carry plain numbers
    return value
