"""hvt's network hypercalls inside the emulator (sim/libos/hvtgate.c) and
POLL's wait inside the run (sim/boot.py): the same guest-visible results,
simulated times and frames as the Python handlers and the blocking wait."""

from __future__ import annotations

import re
import struct

import pytest
import simpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_hvt import boot, guest_image
from unicorn import x86_const as X

from sim.boot import guest_process
from sim.devices.net import Nic, Switch
from sim.devices.peers import PingPeer
from sim.guest import Guest
from sim.image import Image
from sim.libos import hvtgate
from sim.libos.personality import BootConfig
from sim.libos.solo5 import Solo5Options
from sim.trace import ListSink, Tracer

pytestmark = pytest.mark.skipif(not hvtgate.available(), reason="native libraries not built")

SERVER_MAC = bytes.fromhex("020000000002")
CLIENT_MAC = bytes.fromhex("020000000005")


@pytest.fixture(scope="module")
def ping_image(tmp_path_factory):
    return guest_image(tmp_path_factory.mktemp("hvtgate"), "ping", "hvt")


@pytest.fixture(scope="module")
def spt_ping_image(tmp_path_factory):
    return guest_image(tmp_path_factory.mktemp("hvtgate-spt"), "ping", "spt")


def _guest(image, *, python_path: bool = False, mac: bytes | None = None, args=("ping",),
           mem: int | None = None):
    """An hvt guest with net device service0; ``python_path``: calls traced,
    so the gate is closed and the Python handlers serve every hypercall."""
    opts = Solo5Options(nets={"service0": "switch"}, macs={"service0": mac} if mac else {})
    tracer = Tracer(("call", "dev"), [ListSink()]) if python_path else Tracer()
    sized = {} if mem is None else {"mem_bytes": mem}
    config = BootConfig(args=args, options={"solo5": opts}, **sized)
    return Guest(Image.load(image), config, tracer=tracer)


def _ping_run(image, count, *, interval=1_000_000, python_path=False, wait_in_place=True,
              slice_insns=1_000_000):
    """(ping results, end time, hypercall counts, guest) of --ping COUNT."""
    guest, env, switch = _on_a_switch(image, python_path=python_path)
    proc = env.process(guest_process(env, guest, slice_insns, wait_in_place=wait_in_place))
    ping = PingPeer(env, switch, "10.0.0.1").ping("10.0.0.2", count, interval)
    env.run(until=env.any_of([proc, ping]))
    return ping.value, env.now, guest.personality.calls, guest


def test_native_path_is_used_and_matches_the_python_handlers(ping_image):
    native_run = _ping_run(ping_image, 200)
    python_run = _ping_run(ping_image, 200, python_path=True)
    fast = native_run[3].personality.fast
    assert fast is not None and python_run[3].personality.fast is None
    # The echo's NET_READ, NET_WRITE and POLL were answered in C.
    assert {"net_read", "net_write", "poll"} <= set(fast.counts())
    (res, end, calls, guest), (res2, end2, calls2, guest2) = native_run, python_run
    assert res.received == res2.received == 200
    assert res.rtts_ns == res2.rtts_ns
    assert (end, calls, guest.retired, guest.crossings) == \
           (end2, calls2, guest2.retired, guest2.crossings)


def test_more_frames_than_staged_fall_back_to_python(ping_image):
    """20 requests at once: more than C is shown per run (8), so some
    NET_READs are served by Python; the answers are the same either way."""
    res, end, calls, guest = _ping_run(ping_image, 20, interval=0)
    res2, end2, calls2, _ = _ping_run(ping_image, 20, interval=0, python_path=True)
    assert res.received == 20 and res.rtts_ns == res2.rtts_ns and (end, calls) == (end2, calls2)
    p = guest.personality
    assert p._calls["net_read"] > 0 and p.fast.counts()["net_read"] > 0


def test_waiting_in_place_gives_the_blocking_wait_s_results(ping_image):
    # One slice for the whole run: the blocking wait starts a new slice at
    # every POLL, the wait in place does not, and where a slice ends moves
    # when the guest's frames leave (at the step's start, net.py).
    whole = 2_000_000_000
    in_place = _ping_run(ping_image, 300, slice_insns=whole)
    blocking = _ping_run(ping_image, 300, slice_insns=whole, wait_in_place=False)
    assert in_place[0].rtts_ns == blocking[0].rtts_ns
    assert in_place[1:3] == blocking[1:3]
    assert in_place[3].retired == blocking[3].retired


def test_spt_waits_in_place_with_the_blocking_wait_s_results(spt_ping_image):
    """spt's epoll_pwait waits inside the run the same way (Python path)."""
    whole = 2_000_000_000
    in_place = _ping_run(spt_ping_image, 100, slice_insns=whole)
    blocking = _ping_run(spt_ping_image, 100, slice_insns=whole, wait_in_place=False)
    assert in_place[0].received == 100
    assert in_place[0].rtts_ns == blocking[0].rtts_ns and in_place[1:3] == blocking[1:3]


def test_cli_ping_same_results_pcap_and_time_traced_or_not(ping_image, tmp_path):
    runs = []
    for extra in ((), ("--trace=call,dev", "--trace-out", str(tmp_path / "t.txt"))):
        pcap = tmp_path / f"p{len(runs)}.pcap"
        status, _out, err = boot(str(ping_image), "--net:service0=switch", "--ping",
                                 "10.0.0.2:300", "--pcap", str(pcap), *extra, quiet=False)
        assert status == 0, err
        lines = [ln for ln in err.splitlines() if ln.startswith(("ping ", "sim: stopped"))]
        runs.append((lines, pcap.read_bytes()))
    # The summary says how many calls the vCPU answered itself: none when traced.
    untraced_summary = runs[0][0][1]
    assert " host calls (" in untraced_summary and " answered in the vCPU)" in untraced_summary
    runs[0][0][1] = re.sub(r" \(\d+ answered in the vCPU\)", "", untraced_summary)
    assert runs[0] == runs[1] and len(runs[0][0]) == 2
    assert "300 received, 0% packet loss" in runs[0][0][0]


def _on_a_switch(image, *, python_path: bool = False, mem: int | None = None):
    """(guest, env, switch): a guest connected to a new switch."""
    guest = _guest(image, python_path=python_path, mem=mem)
    env = simpy.Environment()
    guest.services.env = env
    switch = Switch(env, seed=0)
    guest.personality.connect(switch)
    return guest, env, switch


def test_run_until_a_time_stops_there_while_the_guest_waits(ping_image):
    """env.run(until=T) hangs its stop on an event the wait must not take."""
    guest, env, switch = _on_a_switch(ping_image)
    env.process(guest_process(env, guest))
    PingPeer(env, switch, "10.0.0.1").ping("10.0.0.2", 50)
    env.run(until=20_500_000)
    assert env.now == 20_500_000
    assert 20 <= guest.personality.calls["net_write"] <= 22  # ARP + one echo per ms


class _Broken:
    name = "broken"

    def deliver(self, frame: bytes) -> None:
        raise RuntimeError("peer broke")


def test_an_exception_inside_the_wait_is_raised_not_swallowed(ping_image):
    guest, env, switch = _on_a_switch(ping_image)
    switch.attach(_Broken())
    proc = env.process(guest_process(env, guest))
    PingPeer(env, switch, "10.0.0.1").ping("10.0.0.2", 3)  # its ARP floods to _Broken
    with pytest.raises(RuntimeError, match="peer broke"):
        env.run(until=proc)


CLIENT_C = r"""#include <picosim.h>
#include "solo5_dev.h"
/* Sends N echo requests (prebuilt frame) and waits for each reply. */
static const unsigned char req[] = {%s};
static unsigned char buf[1514];
int main(int argc, char **argv) {
    long n = argc > 0 ? atoi(argv[argc - 1]) : 1;
    uint64_t h; struct s5_net_info ni;
    if (s5_net_acquire("service0", &h, &ni) != S5_OK) return 1;
    long replies = 0;
    for (long i = 0; i < n; i++) {
        if (s5_net_write(h, req, sizeof req) != S5_OK) return 2;
        for (;;) {
            uint64_t ready; size_t len;
            if (s5_net_read(h, buf, sizeof buf, &len) == S5_OK) {
                if (len > 34 && buf[34] == 0) { replies++; break; }
                continue;
            }
            s5_yield(sdk_clock_ns() + 1000000000ull, &ready);
        }
    }
    printf("%%ld replies\n", replies);
    return 0;
}
"""


def _request() -> bytes:
    from sim.devices.peers import ETHERTYPE_IPV4, IPPROTO_ICMP, ethernet, icmp_echo, ipv4

    icmp = icmp_echo(8, 7, 1, bytes(56))
    return ethernet(SERVER_MAC, CLIENT_MAC, ETHERTYPE_IPV4,
                    ipv4(bytes([10, 0, 0, 9]), bytes([10, 0, 0, 2]), IPPROTO_ICMP, icmp, 1))


def test_two_guests_waiting_in_place_on_one_switch(ping_image, tmp_path):
    """A guest's wait never runs another guest's process: each waits in
    place until the next event would resume the other, then blocks."""
    from sim.sdk.solo5 import build_app

    src = tmp_path / "client.c"
    src.write_text(CLIENT_C % ",".join(str(b) for b in _request()))
    client_image = build_app([src], tmp_path / "client.hvt", "hvt", devices=["net:service0"])

    def run(wait_in_place: bool):
        env = simpy.Environment()
        switch = Switch(env, seed=0)
        server = _guest(ping_image, mac=SERVER_MAC)
        client = _guest(client_image, mac=CLIENT_MAC, args=("client", "40"))
        for g in (server, client):
            g.services.env = env
            g.personality.connect(switch)
        env.process(guest_process(env, server, wait_in_place=wait_in_place))
        proc = env.process(guest_process(env, client, wait_in_place=wait_in_place))
        env.run(until=proc)
        return proc.value, env.now, server.personality.calls, client.personality.calls, client

    first, again = run(True), run(True)
    assert first[0].status == 0, first[0]
    assert first[1:4] == again[1:4]  # deterministic
    assert first[2]["net_write"] == 40  # the server answered every request
    blocking = run(False)
    assert blocking[0].status == 0 and blocking[2]["net_write"] == 40


# A guest that runs ``body`` with ``h``, the handle of net device service0.
_NET_MAIN = """#include <picosim.h>
#include "solo5_dev.h"
int main(void) {
    uint64_t h; struct s5_net_info ni;
    if (s5_net_acquire("service0", &h, &ni) != S5_OK) return 3;
    %s
    return 0;
}
"""


@pytest.mark.parametrize("body,message", [
    # NET_WRITE whose data lies past the end of guest memory: a contained stop.
    (("struct { uint64_t h; uint64_t data; uint64_t len; int ret; } w = {h, 0xfffff000ul, 64, -1};"
      '__asm__ volatile("outl %%eax, %%dx" :: "a"(&w), "d"(0x506) : "memory");'),
     "Invalid guest access"),
    # NET_READ into a buffer that runs past the end of memory.
    (("struct { uint64_t h; uint64_t data; uint64_t len; int ret; } r = {h, 0x200000ul, 1ul << 40, -1};"
      '__asm__ volatile("outl %%eax, %%dx" :: "a"(&r), "d"(0x507) : "memory");'),
     "Invalid guest access"),
])
def test_bad_net_pointers_stop_the_guest_on_either_path(tmp_path, body, message):
    from sim.sdk.solo5 import build_app

    src = tmp_path / "raw.c"
    src.write_text(_NET_MAIN % body)
    image = str(build_app([src], tmp_path / "raw.hvt", "hvt", devices=["net:service0"]))
    results = []
    for extra in ((), ("--trace=call", "--trace-out", str(tmp_path / "t.txt"))):
        status, _out, err = boot(image, "--net:service0=switch", *extra, quiet=False)
        assert status == 1 and message in err and "Traceback" not in err
        results.append([ln for ln in err.splitlines() if "fatal" in ln or "stopped" in ln])
    assert results[0] == results[1]


@pytest.mark.parametrize("handle,length,expect", [
    ("h", 20_000, 2),   # longer than the MTU allows: EINVAL
    ("h", 10, 2),       # shorter than an Ethernet header: EINVAL
    ("h + 7", 64, 2),   # no such device: EINVAL
    ("h", 64, 0),       # a good frame: OK
])
def test_net_write_results_on_either_path(tmp_path, handle, length, expect):
    from sim.sdk.solo5 import build_app

    body = (f"static unsigned char f[64]; struct {{ uint64_t h; uint64_t data; uint64_t len; int ret; }}"
            f" w = {{{handle}, (uint64_t)f, {length}, -1}};"
            '__asm__ volatile("outl %%eax, %%dx" :: "a"(&w), "d"(0x506) : "memory");'
            'printf("ret=%d\\n", w.ret);')
    src = tmp_path / "raw.c"
    src.write_text(_NET_MAIN % body)
    image = str(build_app([src], tmp_path / "raw.hvt", "hvt", devices=["net:service0"]))
    outs = []
    for extra in ((), ("--trace=call", "--trace-out", str(tmp_path / "t.txt"))):
        status, out, err = boot(image, "--net:service0=switch", *extra)
        assert status == 0, err
        outs.append(out)
    assert outs[0] == outs[1] and f"ret={expect}" in outs[0]


def test_hypercall_counts_add_native_and_python(ping_image):
    _res, _end, calls, guest = _ping_run(ping_image, 30)
    p = guest.personality
    native_counts = p.fast.counts()
    assert calls == {name: n + native_counts.get(name, 0) for name, n in p._calls.items()}
    assert guest.crossings == sum(calls.values())
    nic = p.net_ports()[0].nic
    assert isinstance(nic, Nic) and nic.pending == 0


def test_timeline_draws_a_wait_in_place_as_a_wait(ping_image, tmp_path):
    """Under --timeline the vCPU row shows each POLL waited inside the run
    as 'blocked: poll', between runs, never a run across it."""
    import json
    from itertools import pairwise

    out = tmp_path / "t.json"
    status, _o, err = boot(str(ping_image), "--net:service0=switch", "--ping", "10.0.0.2:5",
                           "--timeline", str(out))
    assert status == 0, err
    rows = [e for e in json.loads(out.read_text())["traceEvents"]
            if e.get("tid") == 1 and e.get("ph") == "X"]
    waits = [e for e in rows if e["name"] == "blocked: poll"]
    runs = [e for e in rows if e["name"] == "run"]
    assert len(waits) >= 5 and runs
    spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in rows)
    assert all(a_end <= b_start + 1e-9 for (_a, a_end), (b_start, _b) in pairwise(spans))
    assert sum(e["args"]["insns"] for e in runs) > 0


# -- property: the C path and the Python handlers agree call by call ----------
# A hypercall run directly: ``mov edx, port; mov eax, struct; out dx, eax; hlt``
# in guest memory, on a guest whose gate is open (C first) or closed
# (Python only). Random sequences of network hypercalls with good and bad
# handles, pointers and lengths, and frames arriving in between, must leave
# both guests in the same state after every call.

CODE, STRUCT, BUF = 0x1F0000, 0x1F1000, 0x1F2000
MEM = 8 << 20
_HANDLES = st.sampled_from(["h", "h+1", 63, 1 << 63])
_DATA = st.sampled_from([BUF, MEM - 16, MEM, 1 << 40, 0])
_LENS = st.sampled_from([0, 10, 14, 60, 98, 1514, 1515, 5000, 1 << 63])
_OPS = st.one_of(
    st.tuples(st.just("net_write"), _HANDLES, _DATA, _LENS),
    st.tuples(st.just("net_read"), _HANDLES, _DATA, _LENS),
    st.tuples(st.just("poll"), st.just(0), st.just(0), st.just(0)),
    st.tuples(st.just("walltime"), st.just(0), st.just(0), st.just(0)),
    st.tuples(st.just("arrive"), st.integers(1, 9), st.sampled_from([14, 60, 98, 1514]),
              st.just(0)),
)
_NR = {"walltime": 1, "poll": 3, "net_write": 6, "net_read": 7}


def _lab_guest(image, native_first: bool):
    guest, env, switch = _on_a_switch(image, mem=MEM)
    sender = Nic(switch, "sender", bytes.fromhex("02000000000a"))
    guest.vcpu.gate.clock.open = int(native_first)
    return guest, env, switch, sender


def _call(guest, nr: int, fields: bytes) -> tuple:
    mem, p = guest.vcpu.mem, guest.personality
    mem.write(STRUCT, fields)
    # One stub per call number, never rewritten: Unicorn would run a stale
    # translation of rewritten code.
    code = CODE + 16 * nr
    mem.write(code, b"\xba" + struct.pack("<I", 0x500 + nr) + b"\xb8" + struct.pack("<I", STRUCT)
              + b"\xef\xf4")
    guest.vcpu.set_reg(X.UC_X86_REG_RIP, code)
    p.before_run()
    guest.vcpu.run(100)
    p.after_run()
    stop, p.pending = p.pending, None
    return (mem.read(STRUCT, 32), mem.read(BUF, 1600), getattr(stop, "reason", None),
            p.net_ports()[0].nic.pending, p.switch.frames_in, p.calls)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(_OPS, min_size=1, max_size=12))
def test_native_and_python_paths_agree_call_by_call(ping_image, ops):
    pair = [_lab_guest(ping_image, native_first) for native_first in (True, False)]
    try:
        handle = pair[0][0].personality.net_ports()[0].index
        for kind, a, b, c in ops:
            states = []
            for guest, env, _switch, sender in pair:
                if kind == "arrive":  # a frames of size b reach the guest
                    mac = guest.personality.net_ports()[0].mac
                    for i in range(a):
                        sender.send(mac + sender.mac + b"\x88\xb5" + bytes([i]) * (b - 14))
                    env.run()
                    states.append(guest.personality.net_ports()[0].nic.pending)
                    continue
                h = {"h": handle, "h+1": handle + 1}.get(a, a)
                if kind in ("net_write", "net_read"):
                    fields = struct.pack("<QQQi", h, b, c, -7) + b"\xaa" * 4
                else:
                    fields = bytes(32)
                states.append(_call(guest, _NR[kind], fields))
            assert states[0] == states[1], (kind, a, b, c)
        fast = pair[0][0].personality.fast
        assert pair[1][0].personality.fast.counts() == {}  # the closed gate served nothing
        assert fast is not None
    finally:
        for guest, *_ in pair:
            guest.close()


def test_the_lab_harness_reaches_the_c_path(ping_image):
    """The harness above really runs calls through C when the gate is open."""
    guest, env, _switch, sender = _lab_guest(ping_image, native_first=True)
    try:
        p = guest.personality
        handle = p.net_ports()[0].index
        sender.send(p.net_ports()[0].mac + sender.mac + b"\x88\xb5" + bytes(84))
        env.run()
        _call(guest, _NR["net_write"], struct.pack("<QQQi", handle, BUF, 60, -7) + bytes(4))
        _call(guest, _NR["net_read"], struct.pack("<QQQi", handle, BUF, 1514, -7) + bytes(4))
        _call(guest, _NR["poll"], bytes(32))
        _call(guest, _NR["walltime"], bytes(32))
        assert p.fast.counts() == {"walltime": 1, "poll": 1, "net_write": 1, "net_read": 1}
        assert p._calls == dict.fromkeys(p._calls, 0)
    finally:
        guest.close()


def test_a_call_whose_declaration_changes_shape_stays_in_python():
    """C reads offsets from the declarations, and serves only the shapes it
    knows: a field of another width, or an unknown call, is left to Python."""
    from sim.libos.abi import Dir, Field
    from sim.libos.abi import Struct as AbiStruct
    from sim.libos.hvt import HYPERCALLS
    from sim.libos.hvtgate import FIELDS, plan

    served = plan((c.nr, c.name, c.args) for c in HYPERCALLS)
    assert {c.name for c in HYPERCALLS if c.nr in served} == \
        {"walltime", "poll", "net_write", "net_read"}
    _kind, size, offsets = served[7]  # net_read: offsets straight from its Struct
    layout = {f.name: off for f, off in next(c for c in HYPERCALLS if c.nr == 7).args.layout()}
    assert size == 32 and offsets == {k: v for k, v in layout.items() if k in FIELDS}
    wider = AbiStruct("hvt_hc_net_read", (Field("handle", "u64"), Field("data", "ptr"),
                                          Field("len", "u64", Dir.INOUT),
                                          Field("ret", "u64", Dir.OUT)))
    assert plan([(7, "net_read", wider), (9, "frobnicate", wider)]) == {}


def test_a_poll_past_the_64_bit_clock_blocks_instead_of_waiting_in_place(tmp_path):
    """A deadline beyond what the guest's 64-bit clock holds is not waited
    in place: the POLL ends the run and the guest blocks in its runner."""
    from sim.sdk.solo5 import build_app

    body = ("struct { uint64_t timeout; uint64_t ready; int ret; } p = {1ul << 63, 7, -1};"
            '__asm__ volatile("outl %%eax, %%dx" :: "a"(&p), "d"(0x503) : "memory");'
            'printf("ready=%d ret=%d\\n", (int)p.ready, p.ret);')
    src = tmp_path / "raw.c"
    src.write_text(_NET_MAIN % body)
    image = build_app([src], tmp_path / "raw.hvt", "hvt", devices=["net:service0"])
    guest, env, _switch = _on_a_switch(image)
    proc = env.process(guest_process(env, guest))
    env.run(until=proc)
    assert proc.value.status == 0 and env.now >= 1 << 63
    assert guest.personality.calls["poll"] == 1
