"""Frames per wall second through the simulated switch.

Run: .venv/bin/python bench/bench_net.py [--count N] [--repeat R]

Three modes, best of ``--repeat`` runs each:
* ping: two built-in peers ping each other (``--count`` echoes each, 10 us
  apart, so links are never busy): every frame is encoded, switched,
  scheduled in SimPy, delivered and parsed, checksums checked.
* ping+pcap: the same, every frame also written to a pcap file.
* nic: one Nic sends ``--count`` 98-byte frames to another, which a SimPy
  process drains with wait_frame/recv (the switch and NIC path alone).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import simpy

from sim.devices.net import Nic, Switch
from sim.devices.pcap import PcapWriter
from sim.devices.peers import PingPeer

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")


def run_ping(count: int, pcap_path: str | None) -> tuple[int, float, str]:
    start = time.perf_counter()
    env = simpy.Environment()
    pcap = PcapWriter(pcap_path) if pcap_path else None
    switch = Switch(env, seed=1, pcap=pcap)
    a = PingPeer(env, switch, "10.0.0.1", MAC_A, name="a")
    b = PingPeer(env, switch, "10.0.0.2", MAC_B, name="b")
    pa = a.ping("10.0.0.2", count, interval_ns=10_000)
    pb = b.ping("10.0.0.1", count, interval_ns=10_000)
    env.run(env.all_of([pa, pb]))
    if pcap:
        pcap.close()
    wall = time.perf_counter() - start
    assert pa.value.received == pb.value.received == count
    return switch.frames_in, wall, pa.value.summary()


def run_nic(count: int) -> tuple[int, float, str]:
    start = time.perf_counter()
    env = simpy.Environment()
    switch = Switch(env, seed=1)
    tx, rx = Nic(switch, "tx", MAC_A), Nic(switch, "rx", MAC_B, queue_limit=count + 1)
    payload = MAC_B + MAC_A + b"\x88\xb5" + bytes(84)
    got = 0

    def sender():
        for _ in range(count):
            tx.send(payload)
            yield env.timeout(100)

    def receiver():
        nonlocal got
        while got < count:
            yield rx.wait_frame()
            while rx.recv() is not None:
                got += 1

    env.process(sender())
    done = env.process(receiver())
    env.run(done)
    wall = time.perf_counter() - start
    return switch.frames_in, wall, f"{got} frames received"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--count", type=int, default=20_000, help="echoes per peer / frames (default 20000)"
    )
    ap.add_argument(
        "--repeat", type=int, default=3, help="runs per mode; the best counts (default 3)"
    )
    args = ap.parse_args()
    print(f"count={args.count} repeat={args.repeat} python={sys.version.split()[0]}")
    print(f"{'mode':<10} {'frames':>8} {'wall s':>8} {'k frames/s':>11} {'us/echo':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        modes = {
            "ping": lambda: run_ping(args.count, None),
            "ping+pcap": lambda: run_ping(args.count, str(Path(tmp) / "bench.pcap")),
            "nic": lambda: run_nic(args.count),
        }
        for name, fn in modes.items():
            frames, wall, note = min((fn() for _ in range(args.repeat)), key=lambda r: r[1])
            # An echo is two frames (request and reply).
            per_echo = f"{wall / (frames / 2) * 1e6:8.2f}" if name != "nic" else f"{'-':>8}"
            print(
                f"{name:<10} {frames:>8} {wall:>8.3f} {frames / wall / 1000:>11.1f} {per_echo}  {note}"
            )


if __name__ == "__main__":
    main()
