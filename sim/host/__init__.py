"""The host model: simulated cores, schedulers, isolation profiles, guests.

Layer rule (docs/architecture.md): this package imports only sim.host.* (and, for
emulated guests, receives sim.guest objects from its caller); it knows a
guest only as something that asks for a core, runs, traps and waits.
"""

from sim.host.machine import BLOCKED, EXITED, RUNNABLE, Core, Grant, Host, Stopped, Task
from sim.host.profiles import PROFILES, IsolationProfile, get_profile
from sim.host.schedulers import SCHEDULERS, make_scheduler

__all__ = ["BLOCKED", "EXITED", "RUNNABLE", "Core", "Grant", "Host", "Stopped", "Task",
           "PROFILES", "IsolationProfile", "get_profile", "SCHEDULERS", "make_scheduler"]
