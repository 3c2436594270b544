"""Dispatch and argument decoding, derived from an ABI declaration.

The guest's raw register values become typed Python arguments here, and
every guest pointer is checked exactly once, at this boundary. Handlers never
see a raw pointer: they get bytes for IN buffers, an ``OutBuffer`` for OUT
buffers and a dict for IN structs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sim.cpu.memory import GuestMemory, GuestMemoryError
from sim.libos.abi import Abi, AbiError, Arg, Call, Dir


class PointerPolicy(Protocol):
    """Which guest ranges a call may read or write (the personality decides)."""

    def check_pointer(self, addr: int, size: int, write: bool) -> None: ...


@dataclass
class OutBuffer:
    """A guest buffer the host fills; writes are bounded by its size."""

    mem: GuestMemory
    addr: int
    size: int
    written: int = 0

    def write(self, data: bytes) -> int:
        data = bytes(data[: self.size])
        self.mem.write(self.addr, data)
        self.written = len(data)
        return len(data)


@dataclass
class OutStruct:
    mem: GuestMemory
    addr: int
    layout: Any  # abi.Struct
    values: dict[str, int] = field(default_factory=dict)

    def set(self, **values: int) -> None:
        base = self.mem.read(self.addr, self.layout.size)
        self.mem.write(self.addr, self.layout.encode(values, base))
        self.values.update(values)


@dataclass(slots=True)  # one per wait: not frozen, which costs ~1 us to build
class Block:
    """The caller must wait: until ``until_ns``, or until ``event`` fires.

    ``resume`` is called when it wakes and returns the call's result.
    """

    until_ns: int | None
    event: Any = None
    resume: Callable[[], int] = lambda: 0
    reason: str = "wait"


@dataclass(frozen=True)
class GuestExit:
    """The guest asked to stop (exit call, halt hypercall)."""

    status: int
    reason: str = "exit"


@dataclass(frozen=True)
class Switch:
    """The calling thread gave up the core (yield, exit, block): the guest's
    runner asks the personality (``switch()``) which thread runs next."""

    reason: str = "switch"


class ArgumentError(Exception):
    """An argument that no handler should see (length too large, bad text)."""

    def __init__(self, error: str, message: str):
        super().__init__(message)
        self.error = error


Handler = Callable[..., "int | Block | GuestExit | Switch"]


@dataclass
class Served:
    call: Call | None
    result: int | Block | GuestExit
    args: dict[str, Any]
    denied: str | None = None


class Dispatcher:
    """Decodes a trap into a call and runs its handler.

    ``handlers`` maps call names to functions; a handler for a call the ABI
    does not declare is refused, and so is a declared call without handler,
    so a variant ABI cannot silently lose a call.
    """

    def __init__(self, abi: Abi, handlers: Mapping[str, Handler], mem: GuestMemory,
                 policy: PointerPolicy | None = None, admit: Callable[[Call, dict], str | None] | None = None):
        extra = set(handlers) - set(abi.by_name)
        if extra:
            raise AbiError(f"{abi.name}: handler for undeclared call {sorted(extra)[0]}")
        missing = set(abi.by_name) - set(handlers)
        if missing:
            raise AbiError(f"{abi.name}: call {sorted(missing)[0]} has no handler")
        self.abi = abi
        self.mem = mem
        self.policy = policy
        self.admit = admit
        self._table: dict[int, tuple[Call, Handler]] = {
            c.nr: (c, handlers[c.name]) for c in abi.calls
        }
        # Calls whose arguments are all plain 64-bit values need no decoding
        # beyond naming them: the common, cheap calls take this path.
        self._plain: dict[int, tuple[str, ...]] = {
            c.nr: tuple(a.name for a in c.args) for c in abi.calls
            if all(a.ctype == "u64" for a in c.args)
        }

    def error(self, name: str) -> int:
        return self.abi.error_value(name)

    def serve(self, nr: int, raw: tuple[int, ...]) -> Served:
        entry = self._table.get(nr)
        if entry is None:
            return Served(None, self.error("ENOSYS"), {"nr": nr})
        call, handler = entry
        plain = self._plain.get(nr)
        if plain is not None:
            kwargs = shown = dict(zip(plain, raw))
        else:
            try:
                kwargs, shown = self._decode(call, raw)
            except GuestMemoryError as err:
                return Served(call, self.error("EFAULT"), {"fault": str(err)})
            except ArgumentError as err:
                return Served(call, self.error(err.error), {"invalid": str(err)})
        if self.admit is not None:
            reason = self.admit(call, kwargs)
            if reason is not None:
                return Served(call, self.error("EPERM"), shown, denied=reason)
        try:
            result = handler(**kwargs)
        except GuestMemoryError as err:
            return Served(call, self.error("EFAULT"), {**shown, "fault": str(err)})
        except ArgumentError as err:
            return Served(call, self.error(err.error), {**shown, "invalid": str(err)})
        return Served(call, result, shown)

    def _decode(self, call: Call, raw: tuple[int, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
        values = {arg.name: raw[i] for i, arg in enumerate(call.args)}
        kwargs: dict[str, Any] = {}
        shown: dict[str, Any] = {}
        for arg in call.args:
            value = values[arg.name]
            if arg.ctype == "ptr":
                kwargs[arg.name], shown[arg.name] = self._decode_pointer(arg, value, values)
            else:
                kwargs[arg.name] = shown[arg.name] = _scalar(arg, value)
        return kwargs, shown

    def _decode_pointer(self, arg: Arg, addr: int, values: Mapping[str, int]) -> tuple[Any, Any]:
        if arg.struct is not None:
            size = arg.struct.size
        else:
            size = values[arg.length]
            if size > arg.max_len:
                raise ArgumentError("EINVAL", f"{arg.name}: length {size} exceeds {arg.max_len}")
        reads = arg.dir in (Dir.IN, Dir.INOUT)
        writes = arg.dir in (Dir.OUT, Dir.INOUT)
        if self.policy is not None:
            self.policy.check_pointer(addr, size, write=writes)
        else:
            self.mem.check(addr, size)
        if arg.struct is not None:
            if writes:
                out = OutStruct(self.mem, addr, arg.struct)
                if reads:
                    out.values.update(arg.struct.decode(self.mem.read(addr, size)))
                return out, addr
            fields = arg.struct.decode(self.mem.read(addr, size))
            return fields, fields
        if writes:
            return OutBuffer(self.mem, addr, size), addr
        data = self.mem.read(addr, size)
        if arg.text:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ArgumentError("EINVAL", f"{arg.name} is not UTF-8") from err
            return text, text
        return data, (data if size <= 64 else data[:64] + b"...")


def _scalar(arg: Arg, value: int) -> int:
    if arg.ctype in ("i64", "handle") and value >= 1 << 63:
        return value - (1 << 64)
    if arg.ctype == "u32":
        return value & 0xFFFF_FFFF
    if arg.ctype == "i32":
        value &= 0xFFFF_FFFF
        return value - (1 << 32) if value >= 1 << 31 else value
    return value
