"""Instruction accounting: native and Python counters against count= mode."""

import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from unicorn import UC_ARCH_X86, UC_MODE_64, Uc, UcError
from unicorn.unicorn_const import UC_ERR_READ_UNMAPPED
from unicorn.x86_const import UC_X86_REG_RAX, UC_X86_REG_RBX, UC_X86_REG_RCX, UC_X86_REG_RIP

from sim.cpu import blockcount
from sim.cpu.blockcount import InstructionCounter, retired_before

BASE = 0x1000
HUGE = 1 << 40

# mov ecx, 1000; l: add rax, rcx; dec ecx; jnz l; hlt
# Blocks: [mov add dec jnz] once, then [add dec jnz] 999 times -> 1 + 3*1000 = 3001
LOOP = bytes.fromhex("B9E8030000 4801C8 FFC9 75F9")
LOOP_END = BASE + len(LOOP)  # the hlt
LOOP_INSNS = 3001

INC_RAX = bytes.fromhex("48FFC0")
NOP = b"\x90"
# 10 straight-line instructions, alternating inc rax / nop.
STRAIGHT = b"".join(INC_RAX if i % 2 == 0 else NOP for i in range(10))
STRAIGHT_ADDRS = [BASE + sum(3 if j % 2 == 0 else 1 for j in range(i)) for i in range(11)]

# mov rax,1; inc rax; mov rbx,[0x500000] (unmapped); inc rax; hlt  -- one block
FAULTY = bytes.fromhex("48C7C001000000 48FFC0 488B1C2500005000 48FFC0 F4")
FAULT_RIP = BASE + 7 + 3


@pytest.fixture(scope="module")
def native_built():
    if shutil.which("gcc") is None:
        pytest.skip("gcc is absent: the native counter cannot be built")
    blockcount.build()
    assert blockcount.native_available()


@pytest.fixture(params=["native", "python"])
def kind(request, native_built):
    return request.param


def machine(code: bytes) -> Uc:
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.mem_map(0, 0x10000)
    uc.mem_write(BASE, code + b"\xf4")
    return uc


def counter(uc: Uc, kind: str) -> InstructionCounter:
    c = InstructionCounter(uc, prefer_native=(kind == "native"))
    assert c.kind == kind
    return c


def state(uc: Uc):
    return tuple(uc.reg_read(r) for r in (UC_X86_REG_RIP, UC_X86_REG_RAX, UC_X86_REG_RCX))


def count_mode_state(code: bytes, n: int, until: int):
    """Machine state after exactly n instructions, by Unicorn's count= mode."""
    uc = machine(code)
    uc.emu_start(BASE, until, count=n)
    return state(uc)


def run_slices(code: bytes, kind: str, budget: int, until: int):
    uc = machine(code)
    c = counter(uc, kind)
    slices, rip = [], BASE
    while rip != until:
        c.arm(budget)
        uc.emu_start(rip, until)
        slices.append((c.retired, c.budget_hit, c.last_block))
        rip = uc.reg_read(UC_X86_REG_RIP)
    c.close()
    return slices


def test_loop_total_is_exact(kind):
    uc = machine(LOOP)
    c = counter(uc, kind)
    c.arm(HUGE)
    uc.emu_start(BASE, LOOP_END)
    assert c.retired == LOOP_INSNS
    assert not c.budget_hit
    assert c.last_block == BASE + 5
    assert c.lookups == 2  # one size lookup per distinct block
    assert state(uc) == count_mode_state(LOOP, LOOP_INSNS, LOOP_END)
    # One instruction fewer in count= mode does not reach the end.
    assert count_mode_state(LOOP, LOOP_INSNS - 1, LOOP_END)[0] != LOOP_END


def test_hlt_retires(kind):
    uc = machine(LOOP)
    c = counter(uc, kind)
    c.arm(HUGE)
    uc.emu_start(BASE, 0xFFFF)  # stops at hlt
    assert c.retired == LOOP_INSNS + 1
    assert uc.reg_read(UC_X86_REG_RIP) == LOOP_END + 1


def test_straight_line(kind):
    uc = machine(STRAIGHT)
    c = counter(uc, kind)
    c.arm(HUGE)
    uc.emu_start(BASE, STRAIGHT_ADDRS[10])
    assert c.retired == 10
    assert state(uc) == count_mode_state(STRAIGHT, 10, STRAIGHT_ADDRS[10])


@pytest.mark.parametrize("budget", [1, 2, 3, 4, 5, 6, 7, 100, 2999, 3000, 3001])
def test_budget_slices_match_count_mode(kind, budget):
    uc = machine(LOOP)
    c = counter(uc, kind)
    done, rip = 0, BASE
    while rip != LOOP_END:
        c.arm(budget)
        uc.emu_start(rip, LOOP_END)
        r = c.retired
        assert r >= 1  # progress
        first_block = 4 if done == 0 else 3
        assert r <= max(budget, first_block)  # never over budget but for a first block
        if c.budget_hit:
            assert budget - r < 4  # short of the budget by less than one block
        done += r
        rip = uc.reg_read(UC_X86_REG_RIP)
        # The stop is exact: the state is the one count= mode gives after `done`.
        assert state(uc) == count_mode_state(LOOP, done, LOOP_END)
    assert done == LOOP_INSNS


@settings(max_examples=25, deadline=None)
@given(budget=st.integers(min_value=1, max_value=4000))
def test_native_and_python_agree(native_built, budget):
    native = run_slices(LOOP, "native", budget, LOOP_END)
    python = run_slices(LOOP, "python", budget, LOOP_END)
    assert native == python
    assert sum(r for r, _, _ in native) == LOOP_INSNS


def test_stop_is_before_the_block(kind):
    # Budget 4 takes the first block; the next block does not fit and is not
    # entered: RIP at its start, none of its effects visible.
    uc = machine(LOOP)
    c = counter(uc, kind)
    c.arm(4)
    uc.emu_start(BASE, LOOP_END)
    assert (c.retired, c.budget_hit) == (4, True)
    assert state(uc) == (BASE + 5, 1000, 999)


def test_exit_addresses(kind):
    uc = machine(STRAIGHT)
    uc.ctl_exits_enabled(True)
    uc.ctl_set_exits([STRAIGHT_ADDRS[6]])
    c = counter(uc, kind)
    c.arm(HUGE)
    uc.emu_start(BASE, 0)
    assert uc.reg_read(UC_X86_REG_RIP) == STRAIGHT_ADDRS[6]
    assert c.retired == 6
    assert state(uc) == count_mode_state(STRAIGHT, 6, STRAIGHT_ADDRS[10])
    # Resume from the exit address once it is no longer an exit.
    uc.ctl_set_exits([STRAIGHT_ADDRS[10]])
    c.arm(HUGE)
    uc.emu_start(STRAIGHT_ADDRS[6], 0)
    assert c.retired == 4


def test_mid_block_fault(kind):
    uc = machine(FAULTY)
    c = counter(uc, kind)
    c.arm(HUGE)
    with pytest.raises(UcError) as err:
        uc.emu_start(BASE, 0xFFFF)
    assert err.value.errno == UC_ERR_READ_UNMAPPED
    rip = uc.reg_read(UC_X86_REG_RIP)
    assert rip == FAULT_RIP
    assert c.last_block == BASE
    assert c.retired == c.last_icount == 5  # the whole block, hlt included
    exact = c.retired - c.last_icount + retired_before(uc, c.last_block, rip)
    assert exact == 2
    assert uc.reg_read(UC_X86_REG_RAX) == 2 and uc.reg_read(UC_X86_REG_RBX) == 0


def test_late_counter_misses_translated_blocks(kind):
    # Finding (2): blocks translated before the hook existed carry no hook.
    uc = machine(LOOP)
    uc.emu_start(BASE, 0xFFFF)  # to the hlt, unhooked
    c = counter(uc, kind)
    c.arm(HUGE)
    uc.emu_start(BASE, 0xFFFF)
    assert c.retired == 0
    uc.ctl_flush_tb()
    c.arm(HUGE)
    uc.emu_start(BASE, 0xFFFF)
    assert c.retired == LOOP_INSNS + 1


def test_forget_after_code_change(kind):
    uc = machine(STRAIGHT)
    c = counter(uc, kind)
    c.arm(HUGE)
    uc.emu_start(BASE, STRAIGHT_ADDRS[10])
    assert c.retired == 10
    # Rewrite the code: 10 bytes of nops then the hlt, same block start.
    uc.mem_write(BASE, NOP * 10)
    uc.ctl_remove_cache(BASE, BASE + 16)
    c.forget(BASE, BASE + 16)
    c.arm(HUGE)
    uc.emu_start(BASE, BASE + 10)
    assert c.retired == 10
    assert uc.reg_read(UC_X86_REG_RIP) == BASE + 10


def test_close_is_idempotent_and_unhooks(kind):
    uc = machine(LOOP)
    c = counter(uc, kind)
    c.arm(HUGE)
    uc.emu_start(BASE, LOOP_END)
    c.close()
    c.close()
    assert c.retired == LOOP_INSNS  # last slice still readable
    uc.ctl_flush_tb()
    uc.emu_start(BASE, LOOP_END)  # no hook left to call into freed state
    with pytest.raises(RuntimeError):
        c.arm(10)


def test_bad_budget(kind):
    c = counter(machine(LOOP), kind)
    with pytest.raises(ValueError):
        c.arm(0)
