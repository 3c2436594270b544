"""Solo5's monitor command line on ``sim boot`` (loaded by sim.bootcmd).

Solo5 names devices inside the option (``--block:storage=disk.img``), which
argparse cannot express, so ``apply_boot_options`` takes those from the
arguments argparse left over:

    --block:NAME=PATH              attach a block device backed by PATH
    --block-sector-size:NAME=N     its block size (power of two >= 512; default 512)
    --net:NAME=switch              attach a net device to the run's virtual switch
    --net-mac:NAME=xx:xx:xx:xx:xx:xx   its MAC (default: from the seed)

and ``--pcap FILE`` / ``--ping IP:COUNT`` as ordinary options. ``wrap_run``
builds the switch (and the ping peer) on the run's SimPy environment.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

from sim.libos.personality import BootError
from sim.libos.solo5 import OPTIONS_KEY, options_of, parse_mac, parse_sector_size

SOLO5_PERSONALITIES = ("hvt", "spt")

_DEVICE_OPT = re.compile(r"^--(block|block-sector-size|net|net-mac):([^=]*)(?:=(.*))?$")
PEER_IP = "10.0.0.1"


class PingSpec(NamedTuple):
    ip: str
    count: int

    def __str__(self) -> str:  # the option's own spelling, for records of a run
        return f"{self.ip}:{self.count}"


# The largest ICMP payload one 1500-byte-MTU frame carries (1500 - 20 - 8).
MAX_PING_SIZE = 1472


def _ping_spec(text: str) -> PingSpec:
    ip, sep, count = text.rpartition(":")
    try:
        n = int(count)
        parts = [int(p) for p in ip.split(".")]
        if not sep or n < 1 or len(parts) != 4 or not all(0 <= p <= 255 for p in parts):
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not IP:COUNT (e.g. 10.0.0.2:1000)") from None
    return PingSpec(ip, n)


def add_boot_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "Solo5 devices (hvt, spt)",
        "--block:NAME=PATH attaches a block device, --block-sector-size:NAME=N sets its "
        "block size, --net:NAME=switch attaches a net device to the virtual switch, "
        "--net-mac:NAME=MAC sets its MAC. NAME is a device of the image's manifest.")
    group.add_argument("--pcap", metavar="FILE",
                       help="write every frame crossing the virtual switch to FILE (pcap)")
    group.add_argument("--ping", type=_ping_spec, metavar="IP:COUNT",
                       help=f"a peer at {PEER_IP} pings IP COUNT times and reports replies "
                            "and round-trip times; the run ends when it is done")
    group.add_argument("--ping-interval", type=int, default=1_000_000, metavar="NS",
                       help="simulated ns between echo requests, as ping -i (default "
                            "1000000; 0 sends them all at once, a flood)")
    group.add_argument("--ping-size", type=int, default=56, metavar="BYTES",
                       help="ICMP payload bytes per request, as ping -s (default 56, at most "
                            f"{MAX_PING_SIZE}: the peer does not fragment)")


def apply_boot_options(args: argparse.Namespace, config: Any, extra: list[str]) -> list[str]:
    """Consume Solo5's device options from ``extra``; return what is left."""
    rest: list[str] = []
    opts = None
    for item in extra:
        m = _DEVICE_OPT.match(item)
        if m is None:
            rest.append(item)
            continue
        kind, name, value = m.groups()
        if not name or value is None or value == "":
            raise BootError(f"Malformed argument to --{kind}: '{item}' "
                            f"(write --{kind}:NAME=VALUE)")
        opts = opts or options_of(config)
        table = {"block": opts.blocks, "block-sector-size": opts.sector_sizes,
                 "net": opts.nets, "net-mac": opts.macs}[kind]
        if name in table:
            raise BootError(f"--{kind}:{name} given twice")
        if kind == "block-sector-size":
            table[name] = parse_sector_size(name, value)
        elif kind == "net-mac":
            table[name] = parse_mac(name, value)
        else:
            table[name] = value
    return rest


def wrap_run(args: argparse.Namespace, guest: Any, run: Callable[[], Any]) -> Callable[[], Any]:
    """Give the run a virtual switch (and a ping peer) when it has net devices."""
    opts = guest.config.options.get(OPTIONS_KEY)
    given = opts is not None and (opts.blocks or opts.sector_sizes or opts.nets or opts.macs)
    if given and guest.personality.name not in SOLO5_PERSONALITIES:
        first = next(iter({**opts.blocks, **opts.sector_sizes, **opts.nets, **opts.macs}))
        raise BootError(f"device '{first}': Solo5 device options need a Solo5 (hvt or spt) "
                        f"image; this one runs on the {guest.personality.name} personality")
    connect = getattr(guest.personality, "connect", None)
    ports = getattr(guest.personality, "net_ports", list)()
    if args.ping and not ports:
        raise BootError("--ping needs a net device: the image declares none")
    if args.ping_interval < 0:
        raise BootError("--ping-interval must be >= 0")
    if not 0 <= args.ping_size <= MAX_PING_SIZE:
        raise BootError(f"--ping-size must be within 0..{MAX_PING_SIZE}: larger requests "
                        "need IP fragmentation, which the built-in peer does not do")
    if connect is None or not (ports or args.pcap):
        if args.pcap:
            raise BootError("--pcap needs a Solo5 image with a net device")
        return run

    def networked_run() -> Any:
        import simpy

        from sim.boot import RunResult, guest_process
        from sim.devices.net import Switch
        from sim.devices.pcap import PcapWriter
        from sim.devices.peers import PingPeer
        from sim.guest import Stopped

        env = simpy.Environment()
        guest.services.env = env
        pcap = PcapWriter(args.pcap) if args.pcap else None
        try:
            switch = Switch(env, seed=args.seed, pcap=pcap)
            connect(switch)
            proc = env.process(guest_process(env, guest, args.slice))
            if not args.ping:
                env.run(until=proc)
                return RunResult(proc.value, int(env.now), guest.retired, guest.crossings)
            peer = PingPeer(env, switch, PEER_IP)
            ip, count = args.ping
            ping = peer.ping(ip, count, args.ping_interval, args.ping_size)
            env.run(until=env.any_of([proc, ping]))
            if not ping.triggered:
                env.run(until=ping)
            results = ping.value
            print(f"ping {ip}: {results.summary()}", file=sys.stderr)
            if proc.triggered:
                stopped = proc.value
            else:
                guest.personality.close()
                ok = results.received == results.sent == count
                stopped = Stopped(0 if ok else 1, f"ping finished: {results.received} of "
                                                  f"{results.sent} echo requests answered")
            return RunResult(stopped, int(env.now), guest.retired, guest.crossings)
        finally:
            if pcap is not None:
                pcap.close()

    return networked_run
