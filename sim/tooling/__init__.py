"""Researcher tooling: timelines, snapshots, deterministic replay, GDB stub.

Everything here sits above the guest and the single-guest runner: it wraps
a guest's step, tracer or trap handler, and never reaches into Unicorn
except through the vCPU's own save/restore and debug entry points.
"""
