"""Solo5 hvt call path beside the pico one, in one run.

Run: .venv/bin/python bench/bench_hvt.py [--calls 100000 --frames 5000]

* PUTS of 16 bytes: the same C loop (sdk_backend_write of 16 bytes) built for
  hvt (outl hypercall, served inside the out hook) and for pico (syscall).
* NET_WRITE + POLL + NET_READ: an hvt guest sends an ICMP echo request to the
  built-in peer on the virtual switch, waits with POLL and reads the reply.
Wall-clock time of the run (boot excluded), best of --repeat, less the same
run with one call or one echo (start-up, first translations), per call/echo.
"""

from __future__ import annotations

import argparse
import os
import struct
import tempfile
import time
from pathlib import Path

import simpy

from sim.boot import guest_process
from sim.devices.net import Switch
from sim.devices.peers import PingPeer, checksum
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

GUEST_MAC = bytes([2, 0, 0, 0, 0, 2])
PEER_MAC = bytes([2, 0, 0, 0, 0, 1])


def echo_request() -> bytes:
    icmp = struct.pack("!BBHHH", 8, 0, 0, 1, 1) + bytes(56)
    icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 1, 0, 64, 1, 0,
                     bytes([10, 0, 0, 2]), bytes([10, 0, 0, 1]))
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return PEER_MAC + GUEST_MAC + b"\x08\x00" + ip + icmp


def run(image: Path, args: tuple[str, ...], mem: int, net: bool = False) -> tuple[float, Guest]:
    opts = Solo5Options(nets={"service0": "switch"}, macs={"service0": GUEST_MAC}) if net else None
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


def best(fn, repeat):
    results = [fn() for _ in range(repeat)]
    return min(results, key=lambda r: r[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=100_000)
    ap.add_argument("--frames", type=int, default=5_000)
    ap.add_argument("--repeat", type=int, default=3)
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
        n = str(a.calls)
        base_h, _ = best(lambda: run(hvt, ("1",), 64 << 20), a.repeat)
        base_p, _ = best(lambda: run(pico, ("1",), 64 << 20), a.repeat)
        base_n, _ = best(lambda: run(net, ("1",), 64 << 20, net=True), a.repeat)
        wall_h, g_h = best(lambda: run(hvt, (n,), 64 << 20), a.repeat)
        wall_p, g_p = best(lambda: run(pico, (n,), 64 << 20), a.repeat)
        wall_n, g_n = best(lambda: run(net, (str(a.frames),), 64 << 20, net=True), a.repeat)
    per_h = (wall_h - base_h) / (a.calls - 1)
    per_p = (wall_p - base_p) / (a.calls - 1)
    per_n = (wall_n - base_n) / (a.frames - 1)
    print(f"hvt PUTS(16 B):  {a.calls} calls  {per_h * 1e6:6.2f} us/call  "
          f"{1 / per_h:10,.0f} calls/s  ({g_h.crossings} crossings, {g_h.retired} insns)")
    print(f"pico write(16 B): {a.calls} calls  {per_p * 1e6:6.2f} us/call  "
          f"{1 / per_p:10,.0f} calls/s  ({g_p.crossings} crossings, {g_p.retired} insns)")
    print(f"hvt NET_WRITE+POLL+NET_READ echo: {a.frames} round trips  "
          f"{per_n * 1e6:6.2f} us/echo  {1 / per_n:10,.0f} echoes/s  "
          f"({g_n.crossings} crossings; whole run {wall_n / a.frames * 1e6:.2f} us/echo)")


if __name__ == "__main__":
    main()
