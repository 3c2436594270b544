"""Disassembly for traces: capstone, cached by address.

docs/architecture.md measured ~0.1 M insn/s when every instruction is disassembled and
~2 M insn/s with the cache, so the cache is the point of this module.
"""

from __future__ import annotations

from dataclasses import dataclass

import capstone


@dataclass(frozen=True, slots=True)
class Insn:
    address: int
    size: int
    raw: bytes
    text: str

    @property
    def hex(self) -> str:
        return self.raw.hex(" ")


class Disassembler:
    def __init__(self) -> None:
        self._cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
        self._cache: dict[int, Insn] = {}

    def at(self, address: int, code: bytes) -> Insn:
        """The instruction at address; ``code`` holds the bytes from there on."""
        insn = self._cache.get(address)
        if insn is None or insn.raw != code[: insn.size]:
            insn = self._decode(address, code)
            self._cache[address] = insn
        return insn

    def cached(self, address: int) -> Insn | None:
        return self._cache.get(address)

    def _decode(self, address: int, code: bytes) -> Insn:
        for i in self._cs.disasm_lite(code, address, 1):
            size = i[1]
            text = f"{i[2]} {i[3]}".rstrip()
            return Insn(address, size, bytes(code[:size]), text)
        return Insn(address, 1, bytes(code[:1]), "(bad)")

    def forget(self, start: int, end: int) -> None:
        for addr in [a for a in self._cache if start <= a < end]:
            del self._cache[addr]

    def sweep(self, code: bytes, base: int) -> list[Insn]:
        """Linear sweep of a code range (used to find port-I/O instructions)."""
        out: list[Insn] = []
        offset = 0
        while offset < len(code):
            decoded = list(self._cs.disasm_lite(code[offset:], base + offset, 1))
            if not decoded:
                offset += 1
                continue
            _addr, size, mnem, ops = decoded[0]
            out.append(Insn(base + offset, size, bytes(code[offset:offset + size]),
                            f"{mnem} {ops}".rstrip()))
            offset += size
        return out


_detail_cs: capstone.Cs | None = None


def writes_memory(code: bytes, address: int) -> bool:
    """Whether the first instruction in code stores to memory (for #PF codes)."""
    global _detail_cs
    if _detail_cs is None:
        _detail_cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
        _detail_cs.detail = True
    for insn in _detail_cs.disasm(code, address, 1):
        if insn.mnemonic.startswith(("push", "call", "stos", "movs")):
            return True
        return any(op.type == capstone.x86.X86_OP_MEM and op.access & capstone.CS_AC_WRITE
                   for op in insn.operands)
    return False
