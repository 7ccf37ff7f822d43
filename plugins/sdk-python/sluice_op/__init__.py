"""sluice_op: write sluice ops in Python.

An op is a class (subclass `Op`, implement `run`) or a decorated function (`@op(...)`); its input
is a dataclass whose type hints become the JSON Schema `describe` returns and against which the
step's input is checked before `run` sees it. End the module with `WitWorld = export(...)`, the
name componentize-py looks for::

    from dataclasses import dataclass
    from typing import Annotated
    from sluice_op import export, failure, log, op, success

    @dataclass
    class Input:
        name: Annotated[str, "who to greet"]

    @op("greet", description="Greets someone by name", idempotent=True)
    def greet(ctx, input: Input):
        if not input.name.strip():
            return failure("`name` is empty: give the name of someone to greet")
        log.info(f"greeting {input.name} for {ctx.started_by}")
        return success({"greeting": f"hello, {input.name}"})

    WitWorld = export(greet)

Build with `componentize-py -d wit -w op componentize app -o greet.wasm` (this package beside
`app.py`, or on `-p`). docs/authoring-ops.md has the whole surface.
"""

from __future__ import annotations

import dataclasses
import json
import re
import traceback
import typing
from types import NoneType, UnionType
from typing import Any, Callable

from componentize_py_types import Err
from wit_world import WitWorld as _World
from wit_world.imports import exec as _exec
from wit_world.imports import host as _host
from wit_world.imports import types as wit

__all__ = [
    "Op", "op", "export", "Fail", "HostError", "Decision", "Completed",
    "success", "warning", "failure", "suspend", "approval", "pause", "text", "choice",
    "log", "progress", "annotate", "secret", "exec", "http",
]

# ---------------------------------------------------------------------------------------------
# Outcomes


def _json(value: Any) -> str:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    return json.dumps(value)


def success(output: Any = None) -> wit.Outcome:
    """Done; `output` (a dict, a dataclass, any JSON value) is what later steps read."""
    return wit.Outcome_Success(_json(output))


def warning(output: Any = None, message: str = "") -> wit.Outcome:
    """Done, with something a person should look at; `message` goes to the log as a warning."""
    if message:
        log.warn(message)
    return wit.Outcome_Warning(_json(output))


def failure(message: str, retryable: bool = False, details: Any = None) -> wit.Outcome:
    """Not done: one line saying what went wrong and what to do; `retryable` when trying again
    may help; `details` (any JSON value) for a breakdown."""
    return wit.Outcome_Failure(
        wit.Failure(message=message, retryable=retryable,
                    details="" if details is None else _json(details)))


def suspend(gate: wit.Gate) -> wit.Outcome:
    """Wait for a person at `gate` (see `approval` and `pause`); `resume` is called later."""
    return wit.Outcome_Suspend(gate)


class Fail(Exception):
    """Raise to end the call as a failure from anywhere inside `run`."""

    def __init__(self, message: str, retryable: bool = False, details: Any = None):
        super().__init__(message)
        self.message, self.retryable, self.details = message, retryable, details


class HostError(Exception):
    """The host refused or failed a call: `kind` is `not-granted`, `invalid` or `failed`; the
    message says what to do (for `not-granted`, the grant to add). Uncaught, it fails the op
    with that message."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind, self.message = kind, message


def _host_error(e: Err) -> HostError:
    v = e.value
    kind = {"HostError_NotGranted": "not-granted", "HostError_Invalid": "invalid"}.get(
        type(v).__name__, "failed")
    return HostError(kind, v.value)


# ---------------------------------------------------------------------------------------------
# Gates

_DURATION = re.compile(r"(\d+)(ms|s|m|h|d)")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DECISIONS = ["approve", "reject", "resume", "retry", "skip", "abort", "rollback"]


def _seconds(timeout: int | float | str | None) -> float | None:
    """Seconds from a number or a duration such as `500ms`, `30s`, `5m`, `1h30m`, `1d`."""
    if timeout is None:
        return None
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout >= 0:
        return float(timeout)
    if isinstance(timeout, str):
        parts = _DURATION.findall(timeout)
        if parts and "".join(a + b for a, b in parts) == timeout:
            return float(sum(int(a) * _UNIT[b] for a, b in parts))
    raise ValueError(f"timeout {timeout!r}: give seconds or a duration such as 30s, 5m, 1h30m, 1d")


def _gate(kind, message, approvers, quorum, allow_self_approval, inputs, timeout, on_timeout,
          state) -> wit.Gate:
    if on_timeout is not None and on_timeout not in _DECISIONS:
        raise ValueError(f"on_timeout {on_timeout!r}: choose one of {', '.join(_DECISIONS)}")
    return wit.Gate(
        kind=kind, message=message, approvers=list(approvers), quorum=quorum,
        allow_self_approval=allow_self_approval, inputs=list(inputs),
        timeout_seconds=None if timeout is None else max(1, round(_seconds(timeout))),
        timeout_action=None if on_timeout is None else wit.DecisionKind[on_timeout.upper()],
        state=state.encode() if isinstance(state, str) else bytes(state))


def approval(message: str, *, approvers=(), quorum: int = 1, allow_self_approval: bool = False,
             inputs=(), timeout=None, on_timeout: str | None = None,
             state: bytes | str = b"") -> wit.Gate:
    """An approval gate: `approvers` are users or `group:NAME`; `timeout` seconds or `30m`;
    `on_timeout` one of approve, reject, abort...; `state` comes back to `resume`."""
    return _gate(wit.GateKind.APPROVAL, message, approvers, quorum, allow_self_approval, inputs,
                 timeout, on_timeout, state)


def pause(message: str, *, approvers=(), inputs=(), timeout=None, on_timeout: str | None = None,
          state: bytes | str = b"") -> wit.Gate:
    """A pause: waits until someone resumes the job."""
    return _gate(wit.GateKind.PAUSE, message, approvers, 1, True, inputs, timeout, on_timeout,
                 state)


def text(name: str, description: str = "", *, required: bool = False,
         default: str | None = None) -> wit.GateInput:
    """A free-text input asked of whoever decides; later steps read the answer."""
    return wit.GateInput(name=name, description=description, kind=wit.InputKind_Text(),
                         required=required, default=default)


def choice(name: str, options: list[str], description: str = "", *, required: bool = False,
           default: str | None = None) -> wit.GateInput:
    """An input whose answer is one of `options`."""
    return wit.GateInput(name=name, description=description,
                         kind=wit.InputKind_Choice(list(options)), required=required,
                         default=default)


@dataclasses.dataclass
class Decision:
    """What a person (or a timeout) answered: `kind` is approve, reject, resume, retry, skip,
    abort, rollback or timed-out."""

    kind: str
    user: str = ""
    comment: str = ""
    inputs: dict[str, str] = dataclasses.field(default_factory=dict)

    @staticmethod
    def _of(d: wit.Decision) -> "Decision":
        name = type(d).__name__.removeprefix("Decision_")
        if name == "TimedOut":
            return Decision("timed-out")
        a = d.value
        return Decision(name.lower(), a.user, a.comment, dict(a.inputs))


# ---------------------------------------------------------------------------------------------
# The host


class _Log:
    """`log.info("...")` and friends: lines in the step's log."""

    def trace(self, message: str) -> None:
        _host.log(wit.LogLevel.TRACE, message)

    def debug(self, message: str) -> None:
        _host.log(wit.LogLevel.DEBUG, message)

    def info(self, message: str) -> None:
        _host.log(wit.LogLevel.INFO, message)

    def warn(self, message: str) -> None:
        _host.log(wit.LogLevel.WARN, message)

    def error(self, message: str) -> None:
        _host.log(wit.LogLevel.ERROR, message)


log = _Log()


def progress(message: str, percent: int | None = None) -> None:
    """Says what is happening now, and how far along (0-100) when known."""
    _host.progress(None if percent is None else max(0, min(100, int(percent))), message)


def annotate(title: str, body: str) -> None:
    """Attaches a titled note (a report, a long log) to the job."""
    try:
        _host.annotate(title, body)
    except Err as e:
        raise _host_error(e) from None


def secret(name: str) -> str:
    """A granted secret's value (grant `secret:NAME`)."""
    try:
        return _host.secret(name)
    except Err as e:
        raise _host_error(e) from None


@dataclasses.dataclass
class Completed:
    """How a program ended: `code` (None when killed), `stdout` and `stderr` bytes."""

    program: str
    code: int | None
    stdout: bytes
    stderr: bytes
    timed_out: bool
    truncated: bool

    @property
    def ok(self) -> bool:
        return self.code == 0

    @property
    def text(self) -> str:
        """stdout as text."""
        return self.stdout.decode("utf-8", "replace")

    def check(self) -> "Completed":
        """Itself when the program exited 0; otherwise raises `Fail` with the end of stderr."""
        if self.ok:
            return self
        how = "timed out" if self.timed_out else f"exited {self.code}"
        tail = self.stderr.decode("utf-8", "replace").strip()[-500:]
        raise Fail(f"{self.program} {how}" + (f": {tail}" if tail else ""))


def exec(program: str, *args: str, env: dict[str, str] | None = None,
         stdin: bytes | str = b"", timeout=None) -> Completed:
    """Runs a granted program (grant `exec:PROGRAM`) with `args`, never through a shell."""
    ms = None if timeout is None else round(_seconds(timeout) * 1000)
    cmd = _exec.Command(program=program, args=[str(a) for a in args],
                        env=list((env or {}).items()),
                        stdin=stdin.encode() if isinstance(stdin, str) else bytes(stdin),
                        timeout_ms=ms)
    try:
        s = _exec.run(cmd)
    except Err as e:
        raise _host_error(e) from None
    return Completed(program, s.code, bytes(s.stdout), bytes(s.stderr), s.timed_out, s.truncated)


# ---------------------------------------------------------------------------------------------
# Typed input: dataclass type hints <-> JSON Schema, and checking a step's input against them


class _Http:
    """Outgoing HTTP. Not supported yet from Python: componentize-py needs a world that imports
    `wasi:http/outgoing-handler`, which the `op` world does not. Every call raises a HostError
    saying so; Rust ops have `sluice_op::http` today."""

    def _refuse(self, *args, **kwargs):
        raise HostError("not-supported",
                        "HTTP is not supported yet in Python ops: write this op in Rust "
                        "(sluice_op::http), or run a granted program through exec")

    get = post = request = _refuse


http = _Http()


def _describe(tp) -> tuple[Any, str]:
    """The type under `Annotated[tp, "description"]`, and the description."""
    if typing.get_origin(tp) is typing.Annotated:
        base, *extra = typing.get_args(tp)
        return base, " ".join(x for x in extra if isinstance(x, str))
    return tp, ""


def _fields(cls) -> list[tuple[str, Any, str, bool]]:
    """(name, type, description, required) of each field of dataclass `cls`."""
    hints = typing.get_type_hints(cls, include_extras=True)
    out = []
    for f in dataclasses.fields(cls):
        tp, doc = _describe(hints[f.name])
        doc = f.metadata.get("description", doc)
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        out.append((f.name, tp, doc, required))
    return out


def schema(tp) -> dict:
    """The JSON Schema of a type hint: str, int, float, bool, list[T], dict[str, T], T | None,
    Literal[...], a dataclass, Any."""
    tp, doc = _describe(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is str:
        s = {"type": "string"}
    elif tp is bool:
        s = {"type": "boolean"}
    elif tp is int:
        s = {"type": "integer"}
    elif tp is float:
        s = {"type": "number"}
    elif tp is Any or tp is None:
        s = {}
    elif origin in (list, tuple) or tp in (list, tuple):
        s = {"type": "array"}
        if args and args[0] is not Ellipsis:
            s["items"] = schema(args[0])
    elif origin is dict or tp is dict:
        s = {"type": "object"}
        if len(args) == 2:
            s["additionalProperties"] = schema(args[1])
    elif origin is typing.Literal:
        s = {"enum": list(args)}
    elif origin in (typing.Union, UnionType):
        arms = [a for a in args if a is not NoneType]
        s = schema(arms[0]) if len(arms) == 1 else {"anyOf": [schema(a) for a in arms]}
    elif dataclasses.is_dataclass(tp):
        s = {"type": "object", "additionalProperties": False, "properties": {}}
        if tp.__doc__ and not tp.__doc__.startswith(tp.__name__ + "("):
            s["description"] = tp.__doc__.strip()
        required = []
        for name, ftp, fdoc, req in _fields(tp):
            s["properties"][name] = schema(ftp) | ({"description": fdoc} if fdoc else {})
            if req:
                required.append(name)
        if required:
            s["required"] = required
    else:
        raise TypeError(f"sluice_op cannot describe the type {tp!r} as JSON: use str, int, "
                        "float, bool, list, dict, Literal, Optional or a dataclass")
    return s | ({"description": doc} if doc else {})


def _kind(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "a string"
    return "a list" if isinstance(v, list) else "an object"


def _at(path: str) -> str:
    return f"`{path}`" if path else "the input"


def _decode(tp, v, path: str, op: str):
    """`v` (parsed JSON) as `tp`, or `Fail` naming the place and what was expected."""
    tp, doc = _describe(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)

    def wrong(expected):
        raise Fail(f"{_at(path)} must be {expected}, not {_kind(v)} ({json.dumps(v)[:80]})")

    if tp is Any or tp is None:
        return v
    if tp is str:
        return v if isinstance(v, str) else wrong("a string")
    if tp is bool:
        return v if isinstance(v, bool) else wrong("true or false")
    if tp is int:
        return v if isinstance(v, int) and not isinstance(v, bool) else wrong("a whole number")
    if tp is float:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        return float(v) if ok else wrong("a number")
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(v, list):
            wrong("a list")
        item = args[0] if args else Any
        return [_decode(item, x, f"{path}[{i}]", op) for i, x in enumerate(v)]
    if origin is dict or tp is dict:
        if not isinstance(v, dict):
            wrong("an object")
        value = args[1] if len(args) == 2 else Any
        return {k: _decode(value, x, f"{path}.{k}" if path else k, op) for k, x in v.items()}
    if origin is typing.Literal:
        return v if v in args else wrong("one of " + ", ".join(json.dumps(a) for a in args))
    if origin in (typing.Union, UnionType):
        if v is None and NoneType in args:
            return None
        arms = [a for a in args if a is not NoneType]
        errors = []
        for a in arms:
            try:
                return _decode(a, v, path, op)
            except Fail as e:
                errors.append(e.message)
        raise Fail(errors[0] if len(errors) == 1 else f"{_at(path)} matches none of: "
                   + "; ".join(errors))
    if dataclasses.is_dataclass(tp):
        if not isinstance(v, dict):
            wrong("an object")
        fields = _fields(tp)
        names = [f[0] for f in fields]
        for k in v:
            if k not in names:
                where = f"`{path}.{k}`" if path else f"`{k}`"
                raise Fail(f"{where} is not an input of `{op}`; it takes: {', '.join(names)}")
        kw = {}
        for name, ftp, fdoc, req in fields:
            sub = f"{path}.{name}" if path else name
            if name in v:
                kw[name] = _decode(ftp, v[name], sub, op)
            elif req:
                raise Fail(f"`{sub}` is required" + (f": {fdoc}" if fdoc else ""))
        return tp(**kw)
    raise TypeError(f"sluice_op cannot read input as {tp!r}")


# ---------------------------------------------------------------------------------------------
# Ops


_CAPS = {
    "exec": wit.Capability_Exec, "http": wit.Capability_Http, "secret": wit.Capability_Secret,
    "env": wit.Capability_Env,
}


def _capability(s: str) -> wit.Capability:
    kind, _, arg = s.partition(":")
    if kind == "workspace" and arg in ("", "read-write", "read-only"):
        access = wit.Access.READ_ONLY if arg == "read-only" else wit.Access.READ_WRITE
        return wit.Capability_Workspace(access)
    if kind in _CAPS and arg:
        return _CAPS[kind](arg)
    raise ValueError(f"need {s!r}: write exec:PROGRAM, http:ORIGIN, secret:NAME, env:NAME or "
                     "workspace:read-only|read-write")


class Op:
    """An op as a class: set `name` (and `version`, `description`, `idempotent`, `needs`),
    implement `run(self, ctx, input)`; `resume` and `rollback` when it opens gates or can undo.
    `input` is an instance of the dataclass `run`'s `input` parameter is annotated with (the
    parsed JSON when there is none); `Output`, a dataclass, documents and types the output."""

    name: str = ""
    version: str = "0.1.0"
    description: str = ""
    idempotent: bool = False
    needs: tuple[str, ...] = ()
    Output: type | None = None

    def run(self, ctx: wit.JobContext, input) -> wit.Outcome:
        raise NotImplementedError

    def resume(self, ctx: wit.JobContext, input, state: bytes, decision: Decision) -> wit.Outcome:
        return failure(f"{self.name} opens no gates, so it cannot resume")

    def rollback(self, ctx: wit.JobContext, input, output) -> wit.Outcome:
        return failure(f"{self.name} cannot roll back")

    def _input_type(self):
        return typing.get_type_hints(self.run).get("input")

    def _can_rollback(self) -> bool:
        return type(self).rollback is not Op.rollback


class _FunctionOp(Op):
    def __init__(self, fn: Callable, **meta):
        self._run, self._resume, self._rollback = fn, None, None
        for k, v in meta.items():
            setattr(self, k, v)

    def run(self, ctx, input):
        return self._run(ctx, input)

    def resume(self, ctx, input, state, decision):
        if self._resume is None:
            return Op.resume(self, ctx, input, state, decision)
        return self._resume(ctx, input, state, decision)

    def rollback(self, ctx, input, output):
        if self._rollback is None:
            return Op.rollback(self, ctx, input, output)
        return self._rollback(ctx, input, output)

    def _input_type(self):
        return typing.get_type_hints(self._run).get("input")

    def _can_rollback(self) -> bool:
        return self._rollback is not None

    def on_resume(self, fn: Callable) -> Callable:
        """Decorates `fn(ctx, input, state, decision)`, called after a gate `run` opened."""
        self._resume = fn
        return fn

    def on_rollback(self, fn: Callable) -> Callable:
        """Decorates `fn(ctx, input, output)`, which undoes what `run` did."""
        self._rollback = fn
        return fn


def op(name: str, *, version: str = "0.1.0", description: str = "", idempotent: bool = False,
       needs: tuple[str, ...] | list[str] = (), output: type | None = None):
    """Makes an op of `fn(ctx, input)`; add `@NAME.on_resume` and `@NAME.on_rollback`."""

    def wrap(fn: Callable) -> _FunctionOp:
        return _FunctionOp(fn, name=name, version=version, description=description,
                           idempotent=idempotent, needs=tuple(needs), Output=output)

    return wrap


def _call(body: Callable[[], wit.Outcome]) -> wit.Outcome:
    try:
        out = body()
    except Fail as e:
        return failure(e.message, e.retryable, e.details)
    except HostError as e:
        return failure(e.message)
    except Exception as e:  # noqa: BLE001 - an op's bug is its failure, with the traceback
        log.error(traceback.format_exc())
        return failure(f"{type(e).__name__}: {e}")
    if out is None:
        return success(None)
    if not isinstance(out, (wit.Outcome_Success, wit.Outcome_Warning, wit.Outcome_Failure,
                            wit.Outcome_Suspend)):
        return failure(f"the op returned {type(out).__name__}: return success(...), "
                       "warning(...), failure(...) or suspend(...)")
    return out


def export(the_op: Op | type) -> type:
    """The class componentize-py calls: `WitWorld = export(MyOp)` at the end of `app.py`."""
    o = the_op() if isinstance(the_op, type) else the_op
    if not o.name:
        raise ValueError("the op has no name: set `name` (lowercase letters, digits and `-`)")
    in_type = o._input_type()
    info = wit.OpInfo(
        name=o.name, version=o.version, description=o.description,
        input_schema=json.dumps(schema(in_type)) if in_type is not None else "",
        output_schema=json.dumps(schema(o.Output)) if o.Output is not None else "",
        idempotent=o.idempotent, can_rollback=o._can_rollback(),
        needs=[_capability(n) for n in o.needs])

    def read(input: str):
        try:
            v = json.loads(input)
        except ValueError as e:
            raise Fail(f"the input is not JSON: {e}") from None
        return v if in_type is None else _decode(in_type, v, "", o.name)

    class World(_World):
        def describe(self) -> wit.OpInfo:
            return info

        def run(self, ctx, input):
            return _call(lambda: o.run(ctx, read(input)))

        def resume(self, ctx, input, state, decision):
            return _call(lambda: o.resume(ctx, read(input), bytes(state),
                                          Decision._of(decision)))

        def rollback(self, ctx, input, output):
            def undo():
                out = json.loads(output) if output else None
                if o.Output is not None and out is not None:
                    out = _decode(o.Output, out, "output", o.name)
                return o.rollback(ctx, read(input), out)

            return _call(undo)

    return World
