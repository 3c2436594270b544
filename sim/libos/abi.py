"""How an ABI is declared: numbers, typed arguments, structs, costs, as data.

One declaration per ABI. Dispatch and argument decoding (sim.libos.dispatch),
the trace's decoded arguments, the C header and stubs (sim.libos.abi_c) and
the reference docs (sim.libos.abi_doc) are all derived from it, so an ABI
change is a one-place edit. A researcher's variant ABI is another declaration,
usually made with ``Abi.derive``.
"""

from __future__ import annotations

import re
import struct as _struct
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Iterable, Mapping

# C types an argument or struct field may have: (size, struct format, signed).
CTYPES: dict[str, tuple[int, str]] = {
    "u8": (1, "B"),
    "u16": (2, "H"),
    "u32": (4, "I"),
    "i32": (4, "i"),
    "u64": (8, "Q"),
    "i64": (8, "q"),
    "ptr": (8, "Q"),
    "handle": (8, "q"),
}
C_SPELLING = {
    "u8": "uint8_t", "u16": "uint16_t", "u32": "uint32_t", "i32": "int32_t",
    "u64": "uint64_t", "i64": "int64_t", "ptr": "void *", "handle": "pico_handle_t",
}
_IDENT = re.compile(r"^[a-z][a-z0-9_]*$")


class AbiError(ValueError):
    """A declaration that cannot be right (duplicate number, dangling length...)."""


class Dir(StrEnum):
    IN = "in"
    OUT = "out"
    INOUT = "inout"


@dataclass(frozen=True)
class Field:
    name: str
    ctype: str
    dir: Dir = Dir.IN
    doc: str = ""


@dataclass(frozen=True)
class Struct:
    """A C struct with natural alignment, as the guest's gcc lays it out."""

    name: str
    fields: tuple[Field, ...]
    doc: str = ""

    def layout(self) -> list[tuple[Field, int]]:
        offset, out = 0, []
        for f in self.fields:
            size = CTYPES[f.ctype][0]
            offset = (offset + size - 1) // size * size
            out.append((f, offset))
            offset += size
        return out

    @property
    def size(self) -> int:
        if not self.fields:
            return 0
        f, off = self.layout()[-1]
        end = off + CTYPES[f.ctype][0]
        align = max(CTYPES[x.ctype][0] for x in self.fields)
        return (end + align - 1) // align * align

    def decode(self, data: bytes) -> dict[str, int]:
        return {
            f.name: _struct.unpack_from("<" + CTYPES[f.ctype][1], data, off)[0]
            for f, off in self.layout()
        }

    def encode(self, values: Mapping[str, int], base: bytes | None = None) -> bytes:
        buf = bytearray(base if base is not None else bytes(self.size))
        for f, off in self.layout():
            if f.name in values:
                _struct.pack_into("<" + CTYPES[f.ctype][1], buf, off, values[f.name])
        return bytes(buf)


@dataclass(frozen=True)
class Arg:
    """One register argument.

    A ``ptr`` argument names what it points at: a buffer whose length is held
    by another argument (``length=``), or one struct (``struct=``). ``dir``
    says who writes it: IN (guest to host), OUT (host to guest) or INOUT.
    """

    name: str
    ctype: str = "u64"
    dir: Dir = Dir.IN
    length: str | None = None
    struct: Struct | None = None
    text: bool = False
    max_len: int = 1 << 20
    doc: str = ""

    @property
    def is_buffer(self) -> bool:
        return self.ctype == "ptr" and self.length is not None

    @property
    def is_struct(self) -> bool:
        return self.ctype == "ptr" and self.struct is not None


@dataclass(frozen=True)
class Call:
    nr: int
    name: str
    args: tuple[Arg, ...]
    doc: str
    family: str = "process"
    cost: str = "cheap"
    errors: tuple[str, ...] = ()
    returns: str = "status"  # status | value | handle | count
    blocking: bool = False
    # A call that only reads a clock (one of CLOCK_READS): the vCPU may
    # answer it without leaving the emulator, like a vDSO.
    reads_clock: str | None = None


@dataclass(frozen=True)
class Abi:
    name: str
    version: int
    calls: tuple[Call, ...]
    errors: Mapping[str, tuple[int, str]]
    # Simulated nanoseconds each cost class adds on top of the crossing itself.
    cost_classes: Mapping[str, int]
    # Structs the guest sees outside any call (boot information).
    extra_structs: tuple[Struct, ...] = ()
    trap: str = "syscall"  # how a guest enters the host: syscall (nr in rax)
    max_args: int = 6
    doc: str = ""
    by_nr: Mapping[int, Call] = field(init=False, repr=False, compare=False)
    by_name: Mapping[str, Call] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_nr: dict[int, Call] = {}
        by_name: dict[str, Call] = {}
        for call in self.calls:
            _check_call(self, call)
            if call.nr in by_nr:
                raise AbiError(f"{self.name}: calls {by_nr[call.nr].name} and {call.name} share number {call.nr}")
            if call.name in by_name:
                raise AbiError(f"{self.name}: call {call.name} declared twice")
            by_nr[call.nr] = call
            by_name[call.name] = call
        object.__setattr__(self, "by_nr", by_nr)
        object.__setattr__(self, "by_name", by_name)

    def error_value(self, name: str) -> int:
        return self.errors[name][0]

    def error_name(self, value: int) -> str | None:
        for name, (v, _doc) in self.errors.items():
            if v == value:
                return name
        return None

    @property
    def structs(self) -> list[Struct]:
        seen: dict[str, Struct] = {s.name: s for s in self.extra_structs}
        for call in self.calls:
            for arg in call.args:
                if arg.struct is not None:
                    seen.setdefault(arg.struct.name, arg.struct)
        return list(seen.values())

    def derive(
        self,
        name: str,
        *,
        add: Iterable[Call] = (),
        remove: Iterable[str] = (),
        replace_calls: Iterable[Call] = (),
        costs: Mapping[str, int] | None = None,
        version: int | None = None,
    ) -> "Abi":
        """A variant ABI: the researcher's one-place edit."""
        removed = set(remove)
        unknown = removed - set(self.by_name)
        if unknown:
            raise AbiError(f"{name}: cannot remove unknown call {sorted(unknown)[0]}")
        replacing = {c.name: c for c in replace_calls}
        missing = set(replacing) - set(self.by_name)
        if missing:
            raise AbiError(f"{name}: cannot replace unknown call {sorted(missing)[0]}")
        calls = [replacing.get(c.name, c) for c in self.calls if c.name not in removed]
        return replace(
            self,
            name=name,
            version=self.version if version is None else version,
            calls=tuple(calls) + tuple(add),
            cost_classes={**self.cost_classes, **(costs or {})},
        )


CLOCK_READS = ("monotonic", "wall")


def _check_call(abi: Abi, call: Call) -> None:
    where = f"{abi.name}: call {call.name}"
    if not _IDENT.match(call.name):
        raise AbiError(f"{where}: name must be lower_snake_case")
    if not 0 <= call.nr < 4096:
        raise AbiError(f"{where}: number {call.nr} outside 0..4095")
    if len(call.args) > abi.max_args:
        raise AbiError(f"{where}: {len(call.args)} arguments, at most {abi.max_args} fit in registers")
    if call.cost not in abi.cost_classes:
        raise AbiError(f"{where}: unknown cost class {call.cost!r}")
    for err in call.errors:
        if err not in abi.errors:
            raise AbiError(f"{where}: unknown error {err!r}")
    if call.reads_clock is not None and (call.reads_clock not in CLOCK_READS or call.args
                                         or call.blocking or call.returns != "value"):
        raise AbiError(f"{where}: reads_clock needs one of {', '.join(CLOCK_READS)}, "
                       "no arguments, no blocking, and returns='value'")
    names = [a.name for a in call.args]
    if len(set(names)) != len(names):
        raise AbiError(f"{where}: duplicate argument names")
    for arg in call.args:
        if arg.ctype not in CTYPES:
            raise AbiError(f"{where}: argument {arg.name} has unknown type {arg.ctype!r}")
        if arg.ctype == "ptr" and (arg.length is None) == (arg.struct is None):
            raise AbiError(f"{where}: pointer {arg.name} needs exactly one of length= or struct=")
        if arg.length is not None and arg.length not in names:
            raise AbiError(f"{where}: length {arg.length!r} of {arg.name} is not an argument")


def describe_args(call: Call, values: Mapping[str, Any]) -> dict[str, Any]:
    """Arguments as the trace shows them: pointers as addresses, text as text."""
    return {a.name: values.get(a.name) for a in call.args}
