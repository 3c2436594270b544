"""``sim boot`` options of the pico personality.

    --policy FILE        the monitor's manifest (TOML), instead of the image's
    --sandbox DIR        host directory behind file: URIs (default: a fresh
                         temporary directory, removed after the run)
    --abi-module FILE    a variant ABI (Python file: ABI and HANDLERS)
    --peer IMAGE         a second picoprocess on the same simulated host,
                         sharing pipe: and chan: names (its console goes to
                         stderr, prefixed with its name)
    --peer-args ARGS     its command line arguments (one string)
    --link-latency NS    latency of pipes and channels (default 5000)
    --link-mbps MBPS     their bandwidth in MB/s (default 10000)
    --pipe-capacity BYTES  bytes a pipe or channel holds before writers
                         wait (default 65536)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from sim.libos.pico_streams import DEFAULT_BANDWIDTH, DEFAULT_CAPACITY, DEFAULT_LATENCY_NS, SimHost


def add_boot_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("pico personality")
    g.add_argument("--policy", metavar="FILE", help="monitor manifest (TOML) overriding the image's")
    g.add_argument("--sandbox", metavar="DIR", help="host directory behind file: URIs "
                                                     "(default: a temporary one, removed after)")
    g.add_argument("--abi-module", metavar="FILE", help="run against a variant ABI (Python file)")
    g.add_argument("--peer", metavar="IMAGE", help="a second pico guest on the same simulated host")
    g.add_argument("--peer-args", default="", metavar="ARGS", help="the peer's arguments")
    g.add_argument("--link-latency", type=int, default=DEFAULT_LATENCY_NS, metavar="NS",
                   help=f"pipe/channel latency in ns (default {DEFAULT_LATENCY_NS})")
    g.add_argument("--link-mbps", type=int, default=DEFAULT_BANDWIDTH // 1_000_000,
                   metavar="MBPS", help="pipe/channel bandwidth in MB/s (default "
                                        f"{DEFAULT_BANDWIDTH // 1_000_000})")
    g.add_argument("--pipe-capacity", type=int, default=DEFAULT_CAPACITY, metavar="BYTES",
                   help="bytes a pipe or channel holds (in flight or unread) before "
                        f"writers wait (default {DEFAULT_CAPACITY})")


def apply_boot_options(args: argparse.Namespace, config: Any, extra: list[str]) -> list[str]:
    from sim.cli import UsageError

    opts = config.options
    if getattr(args, "policy", None):
        opts["pico.policy"] = args.policy
    if getattr(args, "sandbox", None):
        opts["pico.sandbox"] = args.sandbox
    if getattr(args, "abi_module", None):
        from sim.libos.abi import AbiError
        from sim.libos.abi_module import load_abi_module

        try:
            opts["pico.abi_module"] = load_abi_module(args.abi_module)
        except AbiError as err:
            raise UsageError(str(err)) from None
    if args.link_latency < 0 or args.link_mbps <= 0 or args.pipe_capacity <= 0:
        raise UsageError("--link-latency must be >= 0, --link-mbps and --pipe-capacity > 0")
    opts["pico.host"] = SimHost(args.link_latency, args.link_mbps * 1_000_000, args.pipe_capacity)
    return extra


# Options that mean something only to the pico personality.
PICO_ONLY = (("policy", "--policy"), ("sandbox", "--sandbox"), ("abi_module", "--abi-module"),
             ("peer", "--peer"))


def wrap_run(args: argparse.Namespace, guest: Any, run: Callable[[], Any]) -> Callable[[], Any]:
    if guest.personality.name != "pico":
        for dest, flag in PICO_ONLY:
            if getattr(args, dest, None):
                from sim.libos.personality import BootError

                raise BootError(f"{flag} is a pico option; this image runs on the "
                                f"{guest.personality.name} personality")
    if not getattr(args, "peer", None):
        return run
    return lambda: run_with_peer(args, guest)


def run_with_peer(args: argparse.Namespace, guest: Any) -> Any:
    """Run the guest and its peer in one SimPy environment; the result is the guest's."""
    import dataclasses

    import simpy

    from sim.boot import RunResult, guest_process
    from sim.bootcmd import resolve_image
    from sim.guest import Guest
    from sim.image import Image

    image = Image.load(resolve_image(args.peer))
    config = dataclasses.replace(guest.config, args=(image.name, *args.peer_args.split()),
                                 options={k: v for k, v in guest.config.options.items()
                                          if k in ("pico.host", "pico.abi_module")})
    name = image.name

    def echo(data: bytes) -> None:
        for line in data.decode("utf-8", "replace").splitlines(keepends=True):
            sys.stderr.write(f"[{name}] {line}")
        sys.stderr.flush()

    env = simpy.Environment()
    guest.services.env = env
    host = guest.config.options.get("pico.host")
    if host is not None:
        host.env = env
    peer = Guest(image, config, name=name, tracer=guest.tracer, on_console=echo,
                 max_insns=guest.max_insns, env=env)
    try:
        main = env.process(guest_process(env, guest, args.slice))
        other = env.process(guest_process(env, peer, args.slice))
        try:
            env.run(until=main)
        except RuntimeError as err:  # both wait forever: nothing left to simulate
            raise SystemExit(f"sim: {err}: the guests wait for each other") from None
        if other.is_alive:
            env.run(until=other) if env.peek() != float("inf") else None
        if peer.stopped is not None:
            sys.stderr.write(f"sim: peer {name} stopped: {peer.stopped.reason}, "
                             f"exit status {peer.stopped.status}\n")
        return RunResult(main.value, int(env.now), guest.retired, guest.crossings)
    finally:
        peer.close()
