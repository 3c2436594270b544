"""Solo5 hvt call path beside the pico one, in one run.

Run: .venv/bin/python bench/bench_hvt.py [--calls 100000 --frames 5000]

* PUTS of 16 bytes: the same C loop (sdk_backend_write of 16 bytes) built for
  hvt (outl hypercall, served inside the out hook) and for pico (syscall).
* NET_WRITE + POLL + NET_READ: an hvt guest sends an ICMP echo request to the
  built-in peer on the virtual switch, waits with POLL and reads the reply.
* what `sim boot ping.hvt --net:service0=switch --ping 10.0.0.2:N` runs:
  the built-in peer pings tests/guests/solo5/ping.c, which
  answers (the CLI's set-up, without its printing; the default interval,
  1 ms of simulated time, so each echo is over before the next); the same
  ping guest built for spt;
* BLOCK_WRITE and BLOCK_READ of one 512-byte block in a loop (a read also
  drops any translated code over the buffer it fills, VCPU.code_changed).
Wall-clock time of the run (boot excluded), best of --repeat, less the same
run with one call or one echo (start-up, first translations), per call/echo.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import simpy

from sim.boot import guest_process
from sim.devices.net import Switch
from sim.devices.peers import (
    ETHERTYPE_IPV4,
    IPPROTO_ICMP,
    PingPeer,
    ethernet,
    icmp_echo,
    ipv4,
)
from sim.guest import Guest
from sim.image import Image
from sim.libos.personality import BootConfig
from sim.libos.solo5 import Solo5Options
from sim.sdk.build import build_app
from sim.sdk.solo5 import build_app as solo5_build

PUTS_C = """#include <picosim.h>
#include "sdk_backend.h"
int main(int argc, char **argv) {
    long n = argc > 0 ? atoi(argv[argc - 1]) : 1;
    for (long i = 0; i < n; i++) sdk_backend_write("0123456789abcdef", 16);
    return 0;
}
"""

NET_C = """#include <picosim.h>
#include "solo5_dev.h"
static const unsigned char req[] = {%s};
static unsigned char buf[1514];
int main(int argc, char **argv) {
    long n = argc > 0 ? atoi(argv[0]) : 1;
    uint64_t h; struct s5_net_info ni;
    if (s5_net_acquire("service0", &h, &ni) != S5_OK) return 1;
    for (long i = 0; i < n; i++) {
        if (s5_net_write(h, req, sizeof req) != S5_OK) return 2;
        size_t len;
        for (;;) {
            uint64_t ready;
            if (s5_net_read(h, buf, sizeof buf, &len) == S5_OK) break;
            s5_yield(sdk_clock_ns() + 1000000000ull, &ready);
        }
    }
    printf("%%ld frames\\n", n);
    return 0;
}
"""

BLOCK_C = """#include <picosim.h>
#include "solo5_dev.h"
static unsigned char buf[512];
int main(int argc, char **argv) {
    long n = argc > 1 ? atoi(argv[1]) : 1;
    int reading = argc > 0 && argv[0][0] == 'r';
    uint64_t h; struct s5_block_info bi;
    if (s5_block_acquire("storage", &h, &bi) != S5_OK) return 1;
    for (long i = 0; i < n; i++)
        if ((reading ? s5_block_read(h, 0, buf, sizeof buf)
                     : s5_block_write(h, 0, buf, sizeof buf)) != S5_OK) return 2;
    return 0;
}
"""

GUEST_MAC = bytes([2, 0, 0, 0, 0, 2])
PEER_MAC = bytes([2, 0, 0, 0, 0, 1])


def echo_request() -> bytes:
    icmp = icmp_echo(8, 1, 1, bytes(56))
    return ethernet(PEER_MAC, GUEST_MAC, ETHERTYPE_IPV4,
                    ipv4(bytes([10, 0, 0, 2]), bytes([10, 0, 0, 1]), IPPROTO_ICMP, icmp, 1))


def run(image: Path, args: tuple[str, ...], mem: int, net: bool = False,
        disk: Path | None = None) -> tuple[float, Guest]:
    opts = Solo5Options(nets={"service0": "switch"}, macs={"service0": GUEST_MAC}) if net else None
    if disk is not None:
        opts = Solo5Options(blocks={"storage": str(disk)})
    config = BootConfig(mem_bytes=mem, args=(image.stem, *args),
                        options={"solo5": opts} if opts else {})
    guest = Guest(Image.load(image), config)
    env = simpy.Environment()
    guest.services.env = env
    if net:
        switch = Switch(env, seed=0)
        guest.personality.connect(switch)
        PingPeer(env, switch, "10.0.0.1", PEER_MAC)
    proc = env.process(guest_process(env, guest))
    t0 = time.perf_counter()
    env.run(until=proc)
    wall = time.perf_counter() - t0
    assert proc.value.status == 0, proc.value
    return wall, guest


PING_GUEST = Path(__file__).resolve().parent.parent / "tests" / "guests" / "solo5" / "ping.c"


def run_pinged(image: Path, count: int) -> tuple[float, Guest]:
    """The peer pings the guest ``count`` times, as --ping does."""
    opts = Solo5Options(nets={"service0": "switch"})
    guest = Guest(Image.load(image), BootConfig(args=(image.stem,), options={"solo5": opts}))
    env = simpy.Environment()
    guest.services.env = env
    switch = Switch(env, seed=0)
    guest.personality.connect(switch)
    proc = env.process(guest_process(env, guest))
    peer = PingPeer(env, switch, "10.0.0.1")
    t0 = time.perf_counter()
    ping = peer.ping("10.0.0.2", count)
    env.run(until=env.any_of([proc, ping]))
    wall = time.perf_counter() - t0
    assert ping.triggered and ping.value.received == count, ping.value.summary()
    return wall, guest


def best(fn, repeat):
    results = [fn() for _ in range(repeat)]
    return min(results, key=lambda r: r[0])


# --breakdown: where an echo's wall time goes. Each component is wrapped with
# a timer that keeps its time exclusive of the wrapped components it calls;
# what a wrapper itself costs lands in its caller and is taken back out
# (the same amount per call, chosen so the parts add up to the unwrapped
# run), so each figure is good to about a microsecond.
COMPONENTS = (
    ("sim.cpu.blockcount", "InstructionCounter", "_run_native",
     "Unicorn: restart, guest code, native hooks, Python out-hook trampolines"),
    ("sim.cpu.memory", "GuestMemory", "read", "GuestMemory.read"),
    ("sim.cpu.memory", "GuestMemory", "write", "GuestMemory.write"),
    ("simpy", "Environment", "step", "SimPy Environment.step: events, process resumption"),
    ("sim.cpu.vcpu", "VCPU", "run", "VCPU.run around emu_start"),
    ("sim.cpu.vcpu", "VCPU", "_on_out", "VCPU._on_out (a Trap per out)"),
    ("sim.guest", "Guest", "step", "Guest.step"),
    ("sim.guest", "Guest", "_on_trap", "Guest._on_trap"),
    ("sim.guest", "Guest", "_tsc", "Guest._tsc (rdtsc value)"),
    ("sim.libos.personality", "GuestServices", "now", "GuestServices.now"),
    ("sim.libos.dispatch", "Block", "__init__", "Block"),
    ("sim.libos.hvt", "HvtPersonality", "on_trap", "hvt on_trap (with the handlers)"),
    ("sim.libos.hvt", "HvtPersonality", "_stop_after", "hvt _stop_after (RIP past the out)"),
    ("sim.libos.hvt", "HvtPersonality", "resume", "hvt resume (POLL's OUT fields)"),
    ("sim.libos.solo5_net", "NetMixin", "send", "hvt NetMixin.send"),
    ("sim.libos.solo5_net", "NetMixin", "receive", "hvt NetMixin.receive"),
    ("sim.libos.solo5_net", "NetMixin", "ready_set", "hvt NetMixin.ready_set"),
    ("sim.libos.solo5_net", "NetMixin", "net_event", "hvt NetMixin.net_event"),
    ("sim.devices.net", "Switch", "send", "Switch.send (copies scheduled)"),
    ("sim.devices.net", "Switch", "_arrive", "Switch._arrive"),
    ("sim.devices.net", "Nic", "send", "Nic.send"),
    ("sim.devices.net", "Nic", "deliver", "Nic.deliver (wake)"),
    ("sim.devices.peers", "PingPeer", "deliver", "PingPeer.deliver (parse, reply)"),
    ("sim.devices.peers", "_PingState", "on_reply", "PingPeer.ping's reply bookkeeping"),
    ("sim.libos.hvt", "HvtPersonality", "wait_in_place", "hvt wait_in_place"),
    ("sim.boot", "_Waiter", "wait_here", "boot's wait_here: the simulation runs in the wait"),
    ("sim.libos.hvtgate", "HvtGate", "stage", "HvtGate.stage (NIC frames shown to C)"),
    ("sim.libos.hvtgate", "HvtGate", "sync", "HvtGate.sync (frames read and written)"),
    ("sim.libos.hvtgate", "HvtGate", "drain", "HvtGate.drain (native counts)"),
    ("sim.libos.hvt", "HvtPersonality", "after_run", "hvt after_run"),
)


def breakdown(run_echoes, frames: int, unwrapped_s: float) -> list[tuple[float, float, str]]:
    """(us per echo, calls per echo, component) for one run of ``frames``
    echoes by ``run_echoes()``."""
    import collections
    import functools
    import importlib

    clock = time.perf_counter
    own: collections.Counter = collections.Counter()
    calls: collections.Counter = collections.Counter()
    inner_calls: collections.Counter = collections.Counter()
    stack = [[0.0, 0]]  # per active component: [time in wrapped callees, their number]

    def timed(fn, label):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            frame = [0.0, 0]
            stack.append(frame)
            t0 = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                dt = clock() - t0
                stack.pop()
                own[label] += dt - frame[0]
                calls[label] += 1
                inner_calls[label] += frame[1]
                stack[-1][0] += dt
                stack[-1][1] += 1
        return wrapper

    saved = []
    for module, cls_name, attr, label in COMPONENTS:
        cls = getattr(importlib.import_module(module), cls_name)
        saved.append((cls, attr, cls.__dict__[attr]))
        setattr(cls, attr, timed(getattr(cls, attr), label))
    try:
        wall, _ = run_echoes()
    finally:
        for cls, attr, fn in saved:
            setattr(cls, attr, fn)
    per_call = (wall - unwrapped_s) / (sum(inner_calls.values()) + stack[0][1])
    rows = [((own[k] - inner_calls[k] * per_call) / frames * 1e6, calls[k] / frames, k)
            for k in own]
    rest = wall - sum(own.values()) - stack[0][1] * per_call
    rows.append((rest / frames * 1e6, 1.0, "the rest: the run loop, boot.guest_process"))
    return sorted(rows, reverse=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=100_000)
    ap.add_argument("--frames", type=int, default=5_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--breakdown", action="store_true",
                    help="also time the echo's components (one more run, wrapped)")
    a = ap.parse_args()
    print(f"calls={a.calls} frames={a.frames} repeat={a.repeat} "
          f"load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "puts.c").write_text(PUTS_C)
        (d / "net.c").write_text(NET_C % ",".join(str(b) for b in echo_request()))
        hvt = solo5_build([d / "puts.c"], d / "puts.hvt", "hvt")
        pico = build_app([d / "puts.c"], d / "puts.pico", "pico")
        net = solo5_build([d / "net.c"], d / "net.hvt", "hvt", devices=["net:service0"])
        pinged = solo5_build([PING_GUEST], d / "ping.hvt", "hvt", devices=["net:service0"])
        pinged_spt = solo5_build([PING_GUEST], d / "ping.spt", "spt", devices=["net:service0"])
        n = str(a.calls)
        (d / "blk.c").write_text(BLOCK_C)
        blk = solo5_build([d / "blk.c"], d / "blk.hvt", "hvt", devices=["block:storage"])
        disk = d / "disk.img"
        disk.write_bytes(bytes(1 << 20))
        blocks = {}
        for mode in ("write", "read"):
            base_b, _ = best(lambda m=mode: run(blk, (m, "1"), 64 << 20, disk=disk), a.repeat)
            wall_b, _ = best(lambda m=mode: run(blk, (m, n), 64 << 20, disk=disk), a.repeat)
            blocks[mode] = (wall_b - base_b) / (a.calls - 1)
        base_h, _ = best(lambda: run(hvt, ("1",), 64 << 20), a.repeat)
        base_p, _ = best(lambda: run(pico, ("1",), 64 << 20), a.repeat)
        base_n, _ = best(lambda: run(net, ("1",), 64 << 20, net=True), a.repeat)
        wall_h, g_h = best(lambda: run(hvt, (n,), 64 << 20), a.repeat)
        wall_p, g_p = best(lambda: run(pico, (n,), 64 << 20), a.repeat)
        wall_n, g_n = best(lambda: run(net, (str(a.frames),), 64 << 20, net=True), a.repeat)
        base_q, _ = best(lambda: run_pinged(pinged, 1), a.repeat)
        wall_q, g_q = best(lambda: run_pinged(pinged, a.frames), a.repeat)
        base_s, _ = best(lambda: run_pinged(pinged_spt, 1), a.repeat)
        wall_s, g_s = best(lambda: run_pinged(pinged_spt, a.frames), a.repeat)
        parts = breakdown(lambda: run(net, (str(a.frames),), 64 << 20, net=True),
                          a.frames, wall_n) if a.breakdown else []
        parts_q = breakdown(lambda: run_pinged(pinged, a.frames),
                            a.frames, wall_q) if a.breakdown else []
    per_h = (wall_h - base_h) / (a.calls - 1)
    per_p = (wall_p - base_p) / (a.calls - 1)
    per_n = (wall_n - base_n) / (a.frames - 1)
    per_q = (wall_q - base_q) / (a.frames - 1)
    per_s = (wall_s - base_s) / (a.frames - 1)
    print(f"hvt PUTS(16 B):  {a.calls} calls  {per_h * 1e6:6.2f} us/call  "
          f"{1 / per_h:10,.0f} calls/s  ({g_h.crossings} crossings, {g_h.retired} insns)")
    print(f"pico write(16 B): {a.calls} calls  {per_p * 1e6:6.2f} us/call  "
          f"{1 / per_p:10,.0f} calls/s  ({g_p.crossings} crossings, {g_p.retired} insns)")
    print(f"hvt NET_WRITE+POLL+NET_READ echo: {a.frames} round trips  "
          f"{per_n * 1e6:6.2f} us/echo  {1 / per_n:10,.0f} echoes/s  "
          f"({g_n.crossings} crossings, {g_n.retired // a.frames} insns/echo; "
          f"whole run {wall_n / a.frames * 1e6:.2f} us/echo)")
    print(f"guest answers --ping (peer -> guest -> peer): {a.frames} echoes  "
          f"{per_q * 1e6:6.2f} us/echo  {1 / per_q:10,.0f} echoes/s  ({g_q.crossings} crossings, "
          f"{g_q.retired // a.frames} insns/echo)")
    print(f"spt guest answers --ping (the same C, as a process):  {a.frames} echoes  "
          f"{per_s * 1e6:6.2f} us/echo  {1 / per_s:10,.0f} echoes/s  ({g_s.crossings} crossings, "
          f"{g_s.retired // a.frames} insns/echo)")
    print(f"hvt BLOCK_WRITE 512 B:  {a.calls} calls  {blocks['write'] * 1e6:6.2f} us/call")
    print(f"hvt BLOCK_READ 512 B:   {a.calls} calls  {blocks['read'] * 1e6:6.2f} us/call "
          f"(also drops translated code over the buffer)")
    for name, rows, wall in (("echo", parts, wall_n), ("--ping", parts_q, wall_q)):
        if rows:
            print(f"where the {name} run's {wall / a.frames * 1e6:.2f} us/echo go:")
            for us, n, label in rows:
                print(f"  {us:6.2f} us  {n:5.2f} calls  {label}")


if __name__ == "__main__":
    main()
