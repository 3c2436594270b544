"""The vCPU on raw machine code: faults, IDT delivery, TSC, budgets, traps."""

from __future__ import annotations

import struct

import pytest
from unicorn import x86_const as X

from sim.cpu.paging import Mapping, PageTableBuilder
from sim.cpu.vcpu import VCPU, ExitKind

CODE = 0x100000
DATA = 0x200000
STACK_TOP = 0x400000
GDT = struct.pack("<3Q", 0, 0x00AF9A000000FFFF, 0x00CF92000000FFFF)


def machine(code: bytes) -> VCPU:
    """A 4 MiB guest: code RX at 1 MiB, data/stack RW NX from 2 MiB, page 0 absent."""
    vcpu = VCPU(4 << 20)
    tables = PageTableBuilder(vcpu.mem, 0x2000, 0x20000, 0x100000, nx_enabled=True)
    tables.map(Mapping(CODE, DATA, writable=False, executable=True))
    tables.map(Mapping(DATA, STACK_TOP, writable=True, executable=False))
    vcpu.mem.write(0x1000, GDT)
    vcpu.mem.write(CODE, code)
    vcpu.enter_long_mode(cr3=0x2000, gdt_base=0x1000, gdt_limit=len(GDT) - 1, rip=CODE,
                         rsp=STACK_TOP, nx=True)
    return vcpu


def asm(*hexes: str) -> bytes:
    return b"".join(bytes.fromhex(h) for h in hexes)


LOAD_0x28 = "488b042528000000"      # mov rax, [0x28]
STORE_0x30 = "48c704253000000001000000"  # mov qword [0x30], 1
HLT = "f4"


def test_page_faults_report_vector_cr2_and_error_code_every_time():
    vcpu = machine(asm("4831c0", LOAD_0x28, STORE_0x30, HLT))  # xor rax,rax first
    first = vcpu.run(1000)
    assert first.kind is ExitKind.FAULT
    assert (first.fault.vector, first.fault.cr2, first.fault.error_code) == (14, 0x28, 0)
    assert first.retired == 1  # the xor retired, the faulting load did not
    vcpu.set_reg(X.UC_X86_REG_RIP, first.rip + 8)
    second = vcpu.run(1000)
    # Without clearing Unicorn's in-flight exception this one was a #DF.
    assert second.kind is ExitKind.FAULT
    assert (second.fault.vector, second.fault.cr2, second.fault.error_code) == (14, 0x30, 2)
    vcpu.set_reg(X.UC_X86_REG_RIP, second.rip + 12)
    assert vcpu.run(1000).kind is ExitKind.HALT
    vcpu.close()


def test_write_to_code_page_is_a_protection_fault():
    vcpu = machine(asm("48c7042500001000" + "01000000", HLT))  # mov qword [0x100000], 1
    result = vcpu.run(100)
    assert result.fault.vector == 14
    assert result.fault.error_code & 0x3 == 0x3  # present + write
    vcpu.close()


def test_execute_from_data_page_faults_with_fetch_bit():
    vcpu = machine(asm("48b8" + struct.pack("<Q", DATA).hex(), "ffe0"))  # mov rax, DATA; jmp rax
    result = vcpu.run(100)
    assert result.fault.vector == 14
    assert result.fault.cr2 == DATA
    assert result.fault.error_code & 0x10
    vcpu.close()


def test_divide_error_and_breakpoint_vectors():
    vcpu = machine(asm("31c9", "31d2", "b801000000", "f7f1", HLT))  # div ecx with ecx=0
    assert vcpu.run(100).fault.vector == 0
    vcpu.close()
    vcpu = machine(asm("cc", HLT))
    result = vcpu.run(100)
    assert result.fault.vector == 3
    assert result.rip == CODE + 1  # a trap: RIP is past the int3
    vcpu.close()


def test_fault_is_delivered_through_the_guest_idt():
    # Handler at CODE+0x100: mov rax, [rsp] (error code); mov rbx, [rsp+8] (rip); hlt
    handler = CODE + 0x100
    idt = DATA + 0x1000
    gate = struct.pack("<HHBBHII", handler & 0xFFFF, 0x08, 0, 0x8E, (handler >> 16) & 0xFFFF,
                       handler >> 32, 0)
    code = asm(LOAD_0x28).ljust(0x100, b"\x90") + asm("488b0424", "488b5c2408", HLT)
    vcpu = machine(code)
    vcpu.mem.write(idt + 14 * 16, gate)
    vcpu.set_reg(X.UC_X86_REG_IDTR, (0, idt, 16 * 32 - 1, 0))
    result = vcpu.run(100)
    assert result.kind is ExitKind.FAULT
    assert vcpu.deliver(result.fault) is None
    assert vcpu.run(100).kind is ExitKind.HALT
    assert vcpu.reg(X.UC_X86_REG_RAX) == 0  # error code: read, not present
    assert vcpu.reg(X.UC_X86_REG_RBX) == CODE  # the faulting instruction
    assert vcpu.reg(X.UC_X86_REG_CR2) == 0x28
    vcpu.close()


def test_no_idt_means_the_fault_cannot_be_delivered():
    vcpu = machine(asm(LOAD_0x28))
    result = vcpu.run(100)
    assert vcpu.deliver(result.fault) == "the guest has no IDT"
    vcpu.close()


def test_rdtsc_returns_what_the_monitor_says():
    vcpu = machine(asm("0f31", "48c1e220", "4809d0", HLT))  # rdtsc; shl rdx,32; or rax,rdx
    vcpu.tsc = lambda retired: 0x1234_5678_9ABC + retired
    vcpu.run(100)
    assert vcpu.reg(X.UC_X86_REG_RAX) == 0x1234_5678_9ABC + vcpu.counter.retired
    vcpu.close()


def test_budget_stops_a_runaway_loop_with_exact_counts():
    vcpu = machine(asm("48ffc0", "ebfb"))  # l: inc rax; jmp l
    total = 0
    for _ in range(5):
        result = vcpu.run(1000)
        assert result.kind is ExitKind.BUDGET
        assert result.retired <= 1000
        total += result.retired
    assert vcpu.reg(X.UC_X86_REG_RAX) == total // 2
    vcpu.close()


def test_jump_to_null_is_a_fetch_fault_not_a_silent_stop():
    vcpu = machine(asm("31c0", "ffe0"))  # xor eax,eax; jmp rax
    result = vcpu.run(100)
    assert result.kind is ExitKind.FAULT
    assert (result.fault.vector, result.fault.cr2) == (14, 0)
    vcpu.close()


def test_syscall_trap_is_served_inside_the_hook_and_can_stop():
    # mov eax, 7; syscall; mov rbx, rax; mov eax, 8; syscall; hlt
    vcpu = machine(asm("b807000000", "0f05", "4889c3", "b808000000", "0f05", HLT))
    seen = []

    def handler(trap):
        nr = vcpu.syscall_args()[0]
        seen.append((trap.kind, trap.rip, nr))
        vcpu.set_reg(X.UC_X86_REG_RAX, nr * 100)
        return nr == 8

    vcpu.trap_handler = handler
    result = vcpu.run(1000)
    assert result.kind is ExitKind.TRAP
    assert seen == [("syscall", CODE + 5, 7), ("syscall", CODE + 15, 8)]
    assert vcpu.reg(X.UC_X86_REG_RBX) == 700  # the result was there for the next instruction
    assert result.retired == 5
    vcpu.close()


def test_closed_vcpu_refuses_to_run():
    vcpu = machine(asm(HLT))
    vcpu.close()
    vcpu.close()  # idempotent
    with pytest.raises(RuntimeError):
        vcpu.run(10)


@pytest.mark.parametrize("code", ["0f0b", "ffff", "d6", "0f3f"])
def test_invalid_instructions_are_contained_faults(code):
    # ud2 reaches the interrupt hook; some undefined opcodes make Unicorn
    # return UC_ERR_INSN_INVALID instead: both must be a #UD fault.
    vcpu = machine(asm("90", code, HLT))
    result = vcpu.run(100)
    assert result.kind is ExitKind.FAULT
    assert result.fault.vector == 6
    assert result.fault.rip == CODE + 1
    assert result.retired == 1  # the nop ran, the invalid instruction did not
    vcpu.close()
