"""Which personality serves which ABI: one row per personality."""

from __future__ import annotations

from sim.libos.hvt import HvtPersonality
from sim.libos.personality import BootError, Personality
from sim.libos.pico import PicoPersonality
from sim.libos.spt import SptPersonality

PERSONALITIES: dict[str, type[Personality]] = {
    PicoPersonality.name: PicoPersonality,
    HvtPersonality.name: HvtPersonality,
    SptPersonality.name: SptPersonality,
}


def personality_for(abi: str) -> type[Personality]:
    try:
        return PERSONALITIES[abi]
    except KeyError:
        raise BootError(f"no personality serves the {abi!r} ABI "
                        f"(known: {', '.join(sorted(PERSONALITIES))})") from None
