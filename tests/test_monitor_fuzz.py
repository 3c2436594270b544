"""Random call sequences straight at the dispatcher and monitor (no Unicorn run).

Invariants, for at least 5,000 sequences: no host exception escapes; every
result is an int, a wait, a switch or an exit; nothing outside the sandbox
is created, changed or removed (a symlink and a file sit right next to it);
the memory quota, the thread limit and the handle limit hold.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.guest import Guest
from sim.image import Image
from sim.libos.dispatch import Block, GuestExit, Switch
from sim.libos.personality import BootConfig
from sim.libos.pico_abi import PICO_ABI
from sim.libos.pico_threads import Wait

IMAGE = Path(__file__).resolve().parent.parent / "sim" / "examples" / "prebuilt" / "forbidden.elf"
POLICY = """
[pico]
calls = ["*"]
uris = ["console:", "file:*", "pipe:*", "chan:*"]
memory = "64KiB"
threads = 3
handles = 6
file_bytes = "8KiB"
"""
URIS = ["console:", "file:a.txt", "file:d/b.txt", "file:../outside.txt", "file:/etc/passwd",
        "file:link", "file:dirlink/outside.txt", "file:..", "file:", "pipe:p", "chan:c",
        "chan:", "bogus", "file:a.txt\0x", "file:" + "x" * 300, "file:\xff"]
URI_BASE = None  # set per guest: where URIS are written in guest memory

NRS = sorted(PICO_ABI.by_nr)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    sandbox = root / "sandbox"
    sandbox.mkdir()
    (root / "outside.txt").write_text("do not touch\n")
    os.symlink(root / "outside.txt", sandbox / "link")
    os.symlink(root, sandbox / "dirlink")
    policy = root / "policy.toml"
    policy.write_text(POLICY)
    return root, sandbox, policy


def snapshot(root: Path, sandbox: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        if Path(dirpath) == sandbox:
            dirnames[:] = []
            continue
        for f in filenames:
            p = Path(dirpath) / f
            st_ = os.lstat(p)
            out[str(p)] = (st_.st_size, st_.st_mtime_ns, p.read_bytes() if p.is_file() else b"")
    return out


def new_guest(sandbox: Path, policy: Path) -> tuple[Guest, list[tuple[int, int]]]:
    g = Guest(Image.load(IMAGE), BootConfig(mem_bytes=4 << 20, options={
        "pico.sandbox": str(sandbox), "pico.policy": str(policy)}))
    p = g.personality
    base = p.vm.start - 0x4000  # inside the boot heap, which is mapped read-write
    pairs = []
    addr = base
    for u in URIS:
        data = u.encode("utf-8", "surrogatepass") if u != "file:\xff" else b"file:\xff"
        g.vcpu.mem.write(addr, data)
        pairs.append((addr, len(data)))
        addr += len(data) + 8
    return g, pairs


def interesting(p) -> list[int]:
    vm = p.vm
    return [0, 1, 8, 16, 4095, 4096, 4097, 1 << 20, (1 << 63) - 1, (1 << 64) - 1, 1 << 63,
            vm.start, vm.start + 4096, vm.end - 4096, vm.end, vm.start - 8, 0xFF0, 0x10000,
            0x100000, p.s.config.mem_bytes - 8, p.s.config.mem_bytes, 2, 3, 7, 0x3]


arg = st.one_of(st.integers(0, (1 << 64) - 1), st.integers(0, 16), st.integers(0, 40))
call = st.tuples(
    st.one_of(st.sampled_from(NRS), st.integers(0, 5000)),
    st.integers(0, len(URIS) - 1),
    st.lists(st.one_of(arg, st.integers(-30, -1)), min_size=6, max_size=6),
    st.booleans(), st.booleans())


def drive(g: Guest, pairs, nr: int, uri_i: int, raw: list[int], use_uri: bool,
          use_interesting: bool) -> bool:
    p = g.personality
    pool = interesting(p)
    args = [(pool[a % len(pool)] if use_interesting and a < 0 else a % (1 << 64)) for a in raw]
    c = PICO_ABI.by_nr.get(nr)
    if use_uri and c is not None and any(a.name == "uri" for a in c.args):
        args[0], args[1] = pairs[uri_i]
    if nr == 1 and raw[1] % 3:   # don't end most sequences at once
        return True
    served = p.dispatcher.serve(nr, tuple(args))
    result = served.result
    if isinstance(result, Block):
        result = Wait(result.reason, deadline=result.until_ns)
    if isinstance(result, Wait):
        p.sched.block(result)
        result = Switch("block")
    if isinstance(result, Switch):
        result = p.switch()
        if isinstance(result, Block):
            result = p.resume(result)
    if isinstance(result, GuestExit):
        return False
    assert result is None or isinstance(result, (int, Block)), result
    # Quotas hold.
    assert p.vm.used <= p.vm.quota
    assert p.sched.alive <= p.policy.threads
    assert len(p.handles) <= p.policy.handles
    return True


@settings(max_examples=5000, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(calls=st.lists(call, min_size=1, max_size=12))
def test_random_call_sequences_are_contained(world, calls):
    root, sandbox, policy = world
    before = snapshot(root, sandbox)
    g, pairs = new_guest(sandbox, policy)
    try:
        for nr, uri_i, raw, use_uri, use_interesting in calls:
            if not drive(g, pairs, nr, uri_i, raw, use_uri, use_interesting):
                break
    finally:
        g.personality.close()
        g.close()
    assert snapshot(root, sandbox) == before
    assert os.path.islink(sandbox / "link") and os.path.islink(sandbox / "dirlink")
