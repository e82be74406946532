"""Spec files: load a ``BoundarySpec`` from TOML or JSON, and write one back canonically.

This is the only module of the contract layer that touches files. A spec file has the
same shape in TOML and JSON (DESIGN.md §2, issue 2)::

    [workload]                      # optional when the command line supplies one
    exe = "/bin/sh"                 # absolute; or: module_ref = "..." for a Wasm module
    args = ["-c", "echo hi"]        # optional, default []

    [[capability]]                  # one table per capability; `type` picks the family
    type = "filesystem"             # access = read | write | read_write
    access = "read"                 # roots = [absolute, normalized paths]
    roots = ["/srv/data"]           # recursive = true (default)
    # type = "network":       policy = "deny_all"  |  allow_list = ["host:port", ...]
    # type = "child_spawn":   policy = deny_new_tasks | allow_threads_within_boundary
    #                                  | allow_descendants_within_boundary
    # type = "environment":   exact = { NAME = "value" }, leases = { NAME = "lease-ref" }
    #                         (both optional; absent means an empty environment)
    # type = "inherited_fds": policy = "none"  |  only = [3, 4]

    [[control]]                     # `type` picks the control
    type = "launch_workload"        # required in every spec
    # capture_streams: stdout, stderr (default true), stdin (default false)
    # expose_path: source, dest, access;  commit_artifact: durability = best_effort | synced
    # kill: target = "run_tree" (default), guarantee = atomic | best_effort_allowed
    # temp_root, discard_artifact, list_outputs: no fields

    [budgets]                       # a dimension left out is not requested
    wall_micros = { limit = 1000000, guarantee = "enforced", evidence = true }

    [evidence]                      # require_<claim> = true for any of the 10 claims
    require_captured_streams = true

Decisions: ``require_exit_status`` (used in issue 2's example) is accepted as an alias of
``require_terminal_outcome`` and written back under the canonical name; indices in error
paths are 0-based (``capability[2]`` is the third ``[[capability]]`` table); unknown keys
are errors; JSON duplicate keys and non-integer numbers are errors. Every problem is a
:class:`SpecFileError` whose ``str()`` is ``"key.path: message"`` — never a traceback.

Writing is canonical: the spec's canonical order (capabilities by family, sorted roots,
env entries by name, ...) and a fixed key order, so load -> dump -> load is the identity
and dumping two equal specs gives the same text. TOML is written by a small writer here
(no runtime dependency); JSON with sorted keys.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bvisor.contract import (
    BoundarySpec,
    Budget,
    BudgetDimension,
    BudgetRequirements,
    Capability,
    CaptureStreams,
    ChildSpawn,
    CommitArtifact,
    ContractError,
    DiscardArtifact,
    Durability,
    EnvEntry,
    Environment,
    EnvLiteral,
    EnvPolicy,
    EvidenceClaim,
    EvidenceRequirements,
    ExposePath,
    FdsNone,
    FdsOnly,
    Filesystem,
    FsAccess,
    HostControl,
    InheritedFds,
    Kill,
    KillGuarantee,
    KillTarget,
    LaunchWorkload,
    ListOutputs,
    MinGuarantee,
    Network,
    NetworkAllowList,
    NetworkDenyAll,
    ProcessWorkload,
    SecretLease,
    SpawnPolicy,
    StdStreams,
    TempRoot,
    WasmWorkload,
    Workload,
)
from bvisor.contract._wire import (
    expect_array,
    expect_bool,
    expect_enum,
    expect_int,
    expect_map,
    expect_text,
)
from bvisor.contract.errors import join_path

__all__ = [
    "EVIDENCE_ALIASES",
    "SpecFileError",
    "dump_spec_json",
    "dump_spec_toml",
    "load_spec",
    "parse_spec_document",
    "parse_spec_text",
    "spec_to_document",
]

_TOP_KEYS = ("workload", "capability", "control", "budgets", "evidence")
EVIDENCE_ALIASES: dict[str, EvidenceClaim] = {
    "require_exit_status": EvidenceClaim.TERMINAL_OUTCOME,
}
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+\Z")


class SpecFileError(ContractError):
    """A spec file is unreadable or invalid; ``str()`` is ``"key.path: message"``."""

    def __init__(self, path: str, message: str, code: str = "invalid", source: str = "") -> None:
        super().__init__(path, message, code)
        self.source = source

    def describe(self) -> str:
        """The error prefixed with the file it came from, for command-line output."""
        return f"{self.source}: {self}" if self.source else str(self)


def _key(name: str) -> str:
    """A TOML key as written in a path or a file: bare when possible, else quoted."""
    return name if _BARE_KEY.match(name) else _toml_string(name)


# --------------------------------------------------------------------------- reading


MAX_SPEC_BYTES = 16 * 1024 * 1024


def _read_spec_bytes(path: str | Path, source: str) -> bytes:
    """The file's bytes, refusing anything but a regular file of bounded size.

    Opened non-blocking and checked with ``fstat`` before reading, so a FIFO, a device
    such as ``/dev/zero`` (or a ``.toml`` symlink to one) or a directory is an error
    naming the file instead of a hang or an unbounded read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise SpecFileError("", f"cannot read spec file: {reason}", "unreadable", source) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = (
                "it is a directory"
                if stat.S_ISDIR(info.st_mode)
                else "it is not a regular file (a FIFO, device or socket)"
            )
            raise SpecFileError("", f"cannot read spec file: {kind}", "unreadable", source)
        if info.st_size > MAX_SPEC_BYTES:
            raise SpecFileError(
                "",
                f"spec file is {info.st_size} bytes, over the {MAX_SPEC_BYTES}-byte limit",
                "too-large",
                source,
            )
        with os.fdopen(fd, "rb", closefd=False) as stream:
            data = stream.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise SpecFileError("", f"cannot read spec file: {reason}", "unreadable", source) from None
    finally:
        os.close(fd)
    if len(data) > MAX_SPEC_BYTES:
        raise SpecFileError(
            "", f"spec file is over the {MAX_SPEC_BYTES}-byte limit", "too-large", source
        )
    return data


def load_spec(path: str | Path, workload_override: Workload | None = None) -> BoundarySpec:
    """Read a ``.toml`` or ``.json`` spec file (chosen by extension)."""
    source = str(path)
    try:
        text = _read_spec_bytes(path, source).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecFileError(
            "", f"cannot read spec file: not UTF-8 text ({exc})", "unreadable", source
        ) from None
    suffix = Path(path).suffix.lower()
    if suffix not in (".toml", ".json"):
        raise SpecFileError(
            "",
            f"unknown spec file type {suffix or '(none)'!r}; use .toml or .json",
            "unknown-format",
            source,
        )
    return parse_spec_text(text, suffix[1:], source, workload_override)


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _reject_float(text: str) -> Any:
    raise ValueError(f"number {text} is not an integer")


def parse_spec_text(
    text: str, fmt: str, source: str = "<spec>", workload_override: Workload | None = None
) -> BoundarySpec:
    """Parse spec text in ``fmt`` ("toml" or "json")."""
    doc: object
    try:
        if fmt == "toml":
            import tomllib  # here: `bvisor run -- CMD` reads no spec file

            doc = tomllib.loads(text)
        elif fmt == "json":
            import json  # here, as tomllib above

            doc = json.loads(
                text,
                object_pairs_hook=_reject_duplicates,
                parse_float=_reject_float,
                parse_constant=_reject_float,
            )
        else:
            raise SpecFileError("", f"unknown format {fmt!r}", "unknown-format", source)
    except ValueError as exc:  # tomllib.TOMLDecodeError and json's errors are ValueErrors
        if isinstance(exc, SpecFileError):
            raise
        raise SpecFileError("", f"not valid {fmt.upper()}: {exc}", "syntax", source) from None
    except RecursionError:
        # Both parsers recurse per nesting level; a spec is never deep, so say so plainly.
        raise SpecFileError(
            "", f"not valid {fmt.upper()}: nested too deeply", "syntax", source
        ) from None
    if not isinstance(doc, dict):
        raise SpecFileError("", "the document must be a table/object", "wrong-type", source)
    _check_unicode(doc, source)
    return parse_spec_document(doc, source, workload_override)


def _check_unicode(doc: Mapping[str, object], source: str) -> None:
    """Refuse text that is not valid Unicode (JSON ``\\ud800`` escapes decode to lone
    surrogates), naming its key path, before any contract type tries to encode it.

    Iterative, so a deep (but parseable) document cannot exhaust the stack here.
    """
    stack: list[tuple[str, object]] = [("", doc)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            _utf8(value, path, source)
        elif isinstance(value, Mapping):
            for key, item in value.items():
                _utf8(str(key), path, source, key=True)
                stack.append((join_path(path, _key(str(key))), item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", item) for i, item in enumerate(value))


def _utf8(text: str, path: str, source: str, *, key: bool = False) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        what = "a key" if key else "the value"
        what += "" if path else " at the top level"
        raise SpecFileError(
            path, f"{what} is not valid Unicode text (lone surrogate)", "bad-text", source
        ) from None


_SPEC_NAMES = re.compile(r"\b(capabilities|controls)\b")
_FILE_NAMES = {"capabilities": "capability", "controls": "control"}


def _rename(text: str) -> str:
    """Spec-level errors speak of ``capabilities[i]``; the file calls them ``capability[i]``."""
    return _SPEC_NAMES.sub(
        lambda m: m.group(1).removesuffix("s").replace("capabilitie", "capability"), text
    )


def parse_spec_document(
    doc: Mapping[str, object],
    source: str = "<spec>",
    workload_override: Workload | None = None,
) -> BoundarySpec:
    """Translate a parsed TOML/JSON document into a spec.

    ``workload_override`` (the command line's ``-- CMD ARGS``) replaces the file's
    ``[workload]``; with neither, the document is an error naming ``workload``.
    """
    try:
        body = expect_map(doc, "", optional=_TOP_KEYS)
        if workload_override is not None:
            workload: Workload = workload_override
        elif "workload" in body:
            workload = _workload(body["workload"], "workload")
        else:
            raise ContractError(
                "workload", "missing: give [workload] in the file or a command", "missing-key"
            )
        caps = expect_array(body.get("capability", []), "capability")
        ctrls = expect_array(body.get("control", []), "control")
        capabilities = tuple(_capability(c, f"capability[{i}]") for i, c in enumerate(caps))
        controls = tuple(_control(c, f"control[{i}]") for i, c in enumerate(ctrls))
        budgets = _budgets(body.get("budgets", {}), "budgets")
        evidence = _evidence(body.get("evidence", {}), "evidence")
        try:
            return BoundarySpec(workload, capabilities, controls, budgets, evidence)
        except ContractError as exc:
            raise ContractError(_rename(exc.path), _rename(exc.message), exc.code) from None
    except SpecFileError:
        raise
    except ContractError as exc:
        raise SpecFileError(exc.path, exc.message, exc.code, source) from None


def _rebase(exc: ContractError, old: str, new: str) -> ContractError:
    """Re-anchor an error from a contract constructor under the spec-file key path.

    ``old`` is the constructor's own name for the field (``endpoints``) and ``new`` the
    spec-file path it came from (``capability[0].allow_list``); "" re-anchors as is.
    """
    if old and exc.path.startswith(old):
        return ContractError(new + exc.path.removeprefix(old), exc.message, exc.code)
    return ContractError(join_path(new, exc.path), exc.message, exc.code)


def _workload(value: object, path: str) -> Workload:
    body = expect_map(value, path, optional=("exe", "args", "module_ref"))
    if "module_ref" in body:
        if "exe" in body or "args" in body:
            raise ContractError(path, "give either exe/args or module_ref, not both", "conflict")
        ref = expect_text(body["module_ref"], f"{path}.module_ref")
        try:
            return WasmWorkload(ref)
        except ContractError as exc:
            raise _rebase(exc, "module_ref", f"{path}.module_ref") from None
    if "exe" not in body:
        raise ContractError(f"{path}.exe", "missing required key", "missing-key")
    exe = expect_text(body["exe"], f"{path}.exe")
    raw_args = expect_array(body.get("args", []), f"{path}.args")
    args = tuple(expect_text(a, f"{path}.args[{i}]") for i, a in enumerate(raw_args))
    try:
        return ProcessWorkload(exe, args)
    except ContractError as exc:
        raise _rebase(exc, "", path) from None


def _texts(value: object, path: str) -> tuple[str, ...]:
    return tuple(expect_text(v, f"{path}[{i}]") for i, v in enumerate(expect_array(value, path)))


def _fields(value: object, path: str, kinds: tuple[str, ...]) -> tuple[str, Mapping[str, object]]:
    if not isinstance(value, Mapping):
        raise ContractError(path, "expected a table", "wrong-type")
    if "type" not in value:
        raise ContractError(f"{path}.type", "missing required key", "missing-key")
    kind = value["type"]
    if not isinstance(kind, str) or kind not in kinds:
        shown = repr(kind) if isinstance(kind, str) else type(kind).__name__
        raise ContractError(
            f"{path}.type", f"expected one of {', '.join(kinds)} (got {shown})", "bad-variant"
        )
    return kind, value


def _one_of(body: Mapping[str, object], path: str, keys: tuple[str, str]) -> str:
    present = [k for k in keys if k in body]
    if len(present) != 1:
        raise ContractError(
            path,
            f"give exactly one of {keys[0]} or {keys[1]}",
            "conflict" if present else "missing-key",
        )
    return present[0]


def _capability(value: object, path: str) -> Capability:
    family, raw = _fields(value, path, _CAPABILITY_READERS_ORDER)
    return _CAPABILITY_READERS[family](raw, path)


def _filesystem(raw: Mapping[str, object], path: str) -> Capability:
    body = expect_map(raw, path, required=("type", "access", "roots"), optional=("recursive",))
    access = expect_enum(FsAccess, body["access"], f"{path}.access")
    roots = _texts(body["roots"], f"{path}.roots")
    recursive = expect_bool(body.get("recursive", True), f"{path}.recursive")
    try:
        return Filesystem(access, roots, recursive)
    except ContractError as exc:
        raise _rebase(exc, "", path) from None


def _network(raw: Mapping[str, object], path: str) -> Capability:
    body = expect_map(raw, path, required=("type",), optional=("policy", "allow_list"))
    if _one_of(body, path, ("policy", "allow_list")) == "policy":
        if body["policy"] != "deny_all":
            raise ContractError(
                f"{path}.policy",
                "expected deny_all (for an allow list use allow_list = [...])",
                "bad-variant",
            )
        return Network(NetworkDenyAll())
    endpoints = _texts(body["allow_list"], f"{path}.allow_list")
    try:
        return Network(NetworkAllowList(endpoints))
    except ContractError as exc:
        raise _rebase(exc, "endpoints", f"{path}.allow_list") from None


def _child_spawn(raw: Mapping[str, object], path: str) -> Capability:
    body = expect_map(raw, path, required=("type", "policy"))
    return ChildSpawn(expect_enum(SpawnPolicy, body["policy"], f"{path}.policy"))


def _environment(raw: Mapping[str, object], path: str) -> Capability:
    body = expect_map(raw, path, required=("type",), optional=("exact", "leases"))
    entries: list[EnvEntry] = []
    where: list[str] = []
    for group in ("exact", "leases"):
        for name, value in _items(body.get(group, {}), f"{path}.{group}"):
            entry_path = f"{path}.{group}.{_key(name)}"
            text = expect_text(value, entry_path)
            try:
                env_value = EnvLiteral(text) if group == "exact" else SecretLease(text)
                entries.append(EnvEntry(name, env_value))
            except ContractError as exc:
                raise ContractError(entry_path, exc.message, exc.code) from None
            where.append(entry_path)
    try:
        return Environment(EnvPolicy(tuple(entries)))
    except ContractError as exc:
        index = int(exc.path.removeprefix("entries[").split("]")[0])
        raise ContractError(where[index], exc.message, exc.code) from None


def _items(value: object, path: str) -> list[tuple[str, object]]:
    if not isinstance(value, Mapping):
        raise ContractError(path, "expected a table of NAME = value", "wrong-type")
    return [(str(k), v) for k, v in value.items()]


def _inherited_fds(raw: Mapping[str, object], path: str) -> Capability:
    body = expect_map(raw, path, required=("type",), optional=("policy", "only"))
    if _one_of(body, path, ("policy", "only")) == "policy":
        if body["policy"] != "none":
            raise ContractError(
                f"{path}.policy", "expected none (to pass fds use only = [3, ...])", "bad-variant"
            )
        return InheritedFds(FdsNone())
    only = expect_array(body["only"], f"{path}.only")
    fds = tuple(expect_int(fd, f"{path}.only[{i}]") for i, fd in enumerate(only))
    try:
        return InheritedFds(FdsOnly(fds))
    except ContractError as exc:
        raise _rebase(exc, "fds", f"{path}.only") from None


_CAPABILITY_READERS: dict[str, Callable[[Mapping[str, object], str], Capability]] = {
    "filesystem": _filesystem,
    "network": _network,
    "child_spawn": _child_spawn,
    "environment": _environment,
    "inherited_fds": _inherited_fds,
}
_CAPABILITY_READERS_ORDER = tuple(_CAPABILITY_READERS)


def _control(value: object, path: str) -> HostControl:
    kind, raw = _fields(value, path, _CONTROL_READERS_ORDER)
    return _CONTROL_READERS[kind](raw, path)


def _unit(factory: Callable[[], HostControl]) -> Callable[[Mapping[str, object], str], HostControl]:
    def read(raw: Mapping[str, object], path: str) -> HostControl:
        expect_map(raw, path, required=("type",))
        return factory()

    return read


def _capture_streams(raw: Mapping[str, object], path: str) -> HostControl:
    body = expect_map(raw, path, required=("type",), optional=("stdout", "stderr", "stdin"))
    return CaptureStreams(
        StdStreams(
            stdout=expect_bool(body.get("stdout", True), f"{path}.stdout"),
            stderr=expect_bool(body.get("stderr", True), f"{path}.stderr"),
            stdin=expect_bool(body.get("stdin", False), f"{path}.stdin"),
        )
    )


def _expose_path(raw: Mapping[str, object], path: str) -> HostControl:
    body = expect_map(raw, path, required=("type", "source", "dest", "access"))
    source = expect_text(body["source"], f"{path}.source")
    dest = expect_text(body["dest"], f"{path}.dest")
    access = expect_enum(FsAccess, body["access"], f"{path}.access")
    try:
        return ExposePath(source, dest, access)
    except ContractError as exc:
        raise _rebase(exc, "", path) from None


def _commit_artifact(raw: Mapping[str, object], path: str) -> HostControl:
    body = expect_map(raw, path, required=("type", "durability"))
    return CommitArtifact(expect_enum(Durability, body["durability"], f"{path}.durability"))


def _kill(raw: Mapping[str, object], path: str) -> HostControl:
    body = expect_map(raw, path, required=("type", "guarantee"), optional=("target",))
    return Kill(
        expect_enum(KillTarget, body.get("target", "run_tree"), f"{path}.target"),
        expect_enum(KillGuarantee, body["guarantee"], f"{path}.guarantee"),
    )


_CONTROL_READERS: dict[str, Callable[[Mapping[str, object], str], HostControl]] = {
    "launch_workload": _unit(LaunchWorkload),
    "capture_streams": _capture_streams,
    "temp_root": _unit(TempRoot),
    "expose_path": _expose_path,
    "commit_artifact": _commit_artifact,
    "discard_artifact": _unit(DiscardArtifact),
    "kill": _kill,
    "list_outputs": _unit(ListOutputs),
}
_CONTROL_READERS_ORDER = tuple(_CONTROL_READERS)


def _budgets(value: object, path: str) -> BudgetRequirements:
    names = tuple(d.value for d in BudgetDimension)
    body = expect_map(value, path, optional=names)
    found: dict[BudgetDimension, Budget] = {}
    for dimension in BudgetDimension:
        if dimension.value not in body:
            continue
        where = f"{path}.{dimension.value}"
        item = expect_map(
            body[dimension.value], where, required=("limit", "guarantee"), optional=("evidence",)
        )
        found[dimension] = Budget(
            expect_int(item["limit"], f"{where}.limit", minimum=0, maximum=(1 << 64) - 1),
            expect_enum(MinGuarantee, item["guarantee"], f"{where}.guarantee"),
            expect_bool(item.get("evidence", True), f"{where}.evidence"),
        )
    return BudgetRequirements.from_items(found)


def _evidence(value: object, path: str) -> EvidenceRequirements:
    keys = {f"require_{claim.value}": claim for claim in EvidenceClaim}
    keys.update(EVIDENCE_ALIASES)
    body = expect_map(value, path, optional=tuple(keys))
    required = set()
    for key, flag in body.items():
        if expect_bool(flag, f"{path}.{key}"):
            required.add(keys[key])
    return EvidenceRequirements(frozenset(required))


# --------------------------------------------------------------------------- writing


def spec_to_document(spec: BoundarySpec) -> dict[str, Any]:
    """The spec as a spec-file document (the shape both formats share), canonical order."""
    doc: dict[str, Any] = {"workload": _workload_doc(spec.workload)}
    if spec.capabilities:
        doc["capability"] = [_capability_doc(c) for c in spec.capabilities]
    doc["control"] = [_control_doc(c) for c in spec.controls]
    budgets = {
        dimension.value: {
            "limit": budget.limit,
            "guarantee": budget.guarantee.value,
            "evidence": budget.evidence,
        }
        for dimension, budget in spec.budgets.items()
    }
    if budgets:
        doc["budgets"] = budgets
    claims = [c for c in EvidenceClaim if c in spec.evidence.required]
    if claims:
        doc["evidence"] = {f"require_{claim.value}": True for claim in claims}
    return doc


def _workload_doc(workload: Workload) -> dict[str, Any]:
    if isinstance(workload, WasmWorkload):
        return {"module_ref": workload.module_ref}
    return {"exe": workload.exe, "args": list(workload.args)}


def _capability_doc(capability: Capability) -> dict[str, Any]:
    if isinstance(capability, Filesystem):
        return {
            "type": "filesystem",
            "access": capability.access.value,
            "roots": list(capability.roots),
            "recursive": capability.recursive,
        }
    if isinstance(capability, Network):
        if isinstance(capability.policy, NetworkAllowList):
            return {"type": "network", "allow_list": list(capability.policy.endpoints)}
        return {"type": "network", "policy": "deny_all"}
    if isinstance(capability, ChildSpawn):
        return {"type": "child_spawn", "policy": capability.policy.value}
    if isinstance(capability, Environment):
        doc: dict[str, Any] = {"type": "environment"}
        exact = {
            e.name: e.value.value
            for e in capability.policy.entries
            if isinstance(e.value, EnvLiteral)
        }
        leases = {
            e.name: e.value.ref
            for e in capability.policy.entries
            if isinstance(e.value, SecretLease)
        }
        if exact or not leases:
            doc["exact"] = exact
        if leases:
            doc["leases"] = leases
        return doc
    if isinstance(capability.policy, FdsOnly):
        return {"type": "inherited_fds", "only": list(capability.policy.fds)}
    return {"type": "inherited_fds", "policy": "none"}


def _control_doc(control: HostControl) -> dict[str, Any]:
    if isinstance(control, CaptureStreams):
        streams = control.streams
        return {
            "type": "capture_streams",
            "stdout": streams.stdout,
            "stderr": streams.stderr,
            "stdin": streams.stdin,
        }
    if isinstance(control, ExposePath):
        return {
            "type": "expose_path",
            "source": control.source,
            "dest": control.dest,
            "access": control.access.value,
        }
    if isinstance(control, CommitArtifact):
        return {"type": "commit_artifact", "durability": control.durability.value}
    if isinstance(control, Kill):
        return {
            "type": "kill",
            "target": control.target.value,
            "guarantee": control.guarantee.value,
        }
    value = control.to_value()
    assert isinstance(value, str)  # the remaining controls are unit variants
    return {"type": value}


def dump_spec_json(spec: BoundarySpec) -> str:
    """Canonical JSON: sorted keys, two-space indent, trailing newline."""
    import json  # only the commands that write a spec need it

    return json.dumps(spec_to_document(spec), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _toml_string(text: str) -> str:
    out = ['"']
    for char in text:
        code = ord(char)
        if char == '"':
            out.append('\\"')
        elif char == "\\":
            out.append("\\\\")
        elif char in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[char])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


_TOML_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        inner = ", ".join(f"{_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }"
    raise TypeError(f"no TOML form for {type(value).__name__}")  # pragma: no cover


def _toml_table(lines: list[str], header: str, table: Mapping[str, object]) -> None:
    if lines:
        lines.append("")
    lines.append(header)
    lines.extend(f"{_key(k)} = {_toml_value(v)}" for k, v in table.items())


def dump_spec_toml(spec: BoundarySpec) -> str:
    """Canonical TOML in the spec-file shape; ``load`` of it gives back an equal spec."""
    doc = spec_to_document(spec)
    lines: list[str] = []
    _toml_table(lines, "[workload]", doc["workload"])
    for capability in doc.get("capability", []):
        _toml_table(lines, "[[capability]]", capability)
    for control in doc["control"]:
        _toml_table(lines, "[[control]]", control)
    if "budgets" in doc:
        _toml_table(lines, "[budgets]", doc["budgets"])
    if "evidence" in doc:
        _toml_table(lines, "[evidence]", doc["evidence"])
    return "\n".join(lines) + "\n"
