"""The guest SDK: a tiny C library, start-up code and linker scripts per target,
and ``build_app`` to turn C sources into a bootable image. See README.md."""

from sim.sdk.build import TARGETS, BuildError, Target, build_app

__all__ = ["TARGETS", "BuildError", "Target", "build_app"]
