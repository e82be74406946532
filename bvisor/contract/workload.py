"""What runs inside the boundary.

``ProcessWorkload`` is a native executable: ``exe`` is the absolute path the host opens
(and then executes by fd, so it is never re-resolved), ``args`` are the arguments after
argv[0]. ``WasmWorkload`` names a module; the Linux backend refuses it at admission.
Canonical forms: ``{"process": {"exe", "args"}}`` (plus ``argv0`` and ``cwd`` when set)
and ``{"wasm": {"module_ref"}}``.

``argv0`` is what the program sees as its name (a venv's ``python`` finds its venv
through it; unset, planner rules give the exe's base name). ``cwd`` is the directory the
workload starts in, inside its boundary (unset: the rules decide). Both are left out of
the canonical form when unset, so specs written before they existed encode, and digest,
exactly as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from bvisor import canonical
from bvisor.contract._wire import (
    as_tuple,
    check_abs_path,
    check_no_nul,
    expect_array,
    expect_map,
    expect_text,
    expect_variant,
)
from bvisor.contract.errors import ContractError

__all__ = [
    "MAX_ARGS",
    "ProcessWorkload",
    "WasmWorkload",
    "Workload",
    "workload_from_value",
]

MAX_ARGS = 65536


@dataclass(frozen=True, slots=True)
class ProcessWorkload:
    exe: str
    args: tuple[str, ...] = ()
    argv0: str | None = None
    cwd: str | None = None

    def __post_init__(self) -> None:
        check_abs_path(self.exe, "exe", normalized=False)
        if self.argv0 is not None:
            check_no_nul(expect_text(self.argv0, "argv0", nonempty=True), "argv0")
        if self.cwd is not None:
            check_abs_path(self.cwd, "cwd")
        args = as_tuple(self.args, "args")
        if len(args) > MAX_ARGS:
            raise ContractError("args", f"more than {MAX_ARGS} arguments", "too-many-args")
        for index, arg in enumerate(args):
            check_no_nul(expect_text(arg, f"args[{index}]"), f"args[{index}]")
        object.__setattr__(self, "args", args)

    @property
    def argv(self) -> tuple[str, ...]:
        """The full argv, with ``exe`` as argv[0]."""
        return (self.exe, *self.args)

    def to_value(self) -> dict[str, canonical.Value]:
        body: dict[str, canonical.Value] = {"exe": self.exe, "args": list(self.args)}
        if self.argv0 is not None:
            body["argv0"] = self.argv0
        if self.cwd is not None:
            body["cwd"] = self.cwd
        return {"process": body}

    @classmethod
    def from_value(cls, value: object, path: str = "workload") -> ProcessWorkload:
        _, payload = expect_variant(value, path, ("process",))
        inner = f"{path}.process"
        body = expect_map(payload, inner, required=("exe", "args"), optional=("argv0", "cwd"))
        args = expect_array(body["args"], f"{inner}.args")
        argv0, cwd = body.get("argv0"), body.get("cwd")
        try:
            return cls(
                expect_text(body["exe"], f"{inner}.exe"),
                tuple(args),  # type: ignore[arg-type]
                None if argv0 is None else expect_text(argv0, f"{inner}.argv0"),
                None if cwd is None else expect_text(cwd, f"{inner}.cwd"),
            )
        except ContractError as exc:
            raise exc.under(inner) from None


@dataclass(frozen=True, slots=True)
class WasmWorkload:
    module_ref: str

    def __post_init__(self) -> None:
        check_no_nul(expect_text(self.module_ref, "module_ref", nonempty=True), "module_ref")

    def to_value(self) -> dict[str, canonical.Value]:
        return {"wasm": {"module_ref": self.module_ref}}

    @classmethod
    def from_value(cls, value: object, path: str = "workload") -> WasmWorkload:
        _, payload = expect_variant(value, path, ("wasm",))
        body = expect_map(payload, f"{path}.wasm", required=("module_ref",))
        try:
            return cls(expect_text(body["module_ref"], f"{path}.wasm.module_ref"))
        except ContractError as exc:
            raise exc.under(f"{path}.wasm") from None


Workload: TypeAlias = ProcessWorkload | WasmWorkload


def workload_from_value(value: object, path: str = "workload") -> Workload:
    """Decode either workload variant."""
    name, _ = expect_variant(value, path, ("process", "wasm"))
    if name == "process":
        return ProcessWorkload.from_value(value, path)
    return WasmWorkload.from_value(value, path)
