"""``sim abi list|header|doc``: the ABI table, its C header, its reference."""

from __future__ import annotations

import argparse
import sys

from sim.libos.abi import Abi
from sim.libos.abi_c import c_header
from sim.libos.abi_doc import markdown_doc, table

RENDERERS = {"list": table, "header": c_header, "doc": markdown_doc}


def _abi(args: argparse.Namespace) -> Abi:
    if args.abi_module:
        from sim.libos.abi_module import load_abi_module

        return load_abi_module(args.abi_module).abi
    from sim.libos.pico_abi import PICO_ABI

    return PICO_ABI


def abi_command(args: argparse.Namespace) -> int:
    text = RENDERERS[args.what](_abi(args))
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("abi", help="print the pico ABI table, its C header or its reference doc")
    p.add_argument("what", choices=sorted(RENDERERS), help="list, header or doc")
    p.add_argument("--abi-module", metavar="FILE", help="a variant ABI defined in a Python file")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    p.set_defaults(func=abi_command)
