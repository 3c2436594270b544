"""The pico ABI: a Drawbridge-style narrow interface, declared once.

Guests enter the host with ``syscall``: call number in rax, arguments in
rdi, rsi, rdx, r10, r8, r9, result in rax. A negative result is an error
from ERRORS. Numbers are grouped by family so that the table reads like the
Drawbridge ABI it follows (process, memory, threads, streams).
"""

from __future__ import annotations

from sim.libos.abi import Abi, Arg, Call, Dir, Field, Struct

ERRORS = {
    "OK": (0, "success"),
    "EPERM": (-1, "the security monitor denied the call"),
    "ENOSYS": (-2, "no such call"),
    "EFAULT": (-3, "a pointer argument is outside the guest's memory"),
    "EINVAL": (-4, "an argument is invalid"),
    "EBADH": (-5, "no such handle"),
    "ENOMEM": (-6, "memory quota exhausted"),
    "EAGAIN": (-7, "try again: nothing available yet"),
    "ELIMIT": (-8, "a per-guest limit was reached"),
    "ENOENT": (-9, "no such stream"),
    "ETIMEDOUT": (-10, "the deadline passed"),
    "EEXIST": (-11, "already exists"),
    "EPIPE": (-12, "the other end is closed"),
    "ENOSPC": (-13, "no space left"),
}

# Simulated ns a call costs the host beyond the crossing itself (the
# crossing's price comes from the isolation profile of the host model).
COST_CLASSES = {
    "cheap": 20,      # read a counter, copy a few bytes
    "copy": 100,      # move a caller's buffer
    "memory": 400,    # change page tables
    "thread": 800,    # create or switch a register context
    "stream": 300,    # open/close a stream, check its URI
}


def _buf_in(name: str, length: str, doc: str, text: bool = False) -> Arg:
    return Arg(name, "ptr", Dir.IN, length=length, text=text, doc=doc)


def _buf_out(name: str, length: str, doc: str) -> Arg:
    return Arg(name, "ptr", Dir.OUT, length=length, doc=doc)


# Where the guest finds its memory: RDI holds this struct's address at entry.
BOOT_INFO = Struct("pico_boot_info", (
    Field("mem_size", "u64", doc="bytes of guest memory"),
    Field("heap_start", "u64", doc="first byte the guest may use as heap"),
    Field("heap_end", "u64", doc="end of the heap (start of the stack area)"),
    Field("stack_top", "u64", doc="initial stack pointer"),
), doc="boot information at guest-physical 0x10000")

CALLS = (
    Call(1, "exit", (Arg("status", "i64", doc="exit status of the guest"),),
         "End the picoprocess with a status.", family="process"),
    Call(2, "console_write", (_buf_in("buf", "size", "bytes to write"), Arg("size", doc="byte count")),
         "Write bytes to the console; returns the count written.", family="process",
         cost="copy", errors=("EFAULT",), returns="count"),
    Call(3, "clock_monotonic", (), "Nanoseconds of simulated time since boot.",
         family="process", returns="value"),
    Call(4, "clock_wall", (), "Nanoseconds since the Unix epoch (simulated).",
         family="process", returns="value"),
    Call(5, "sleep_until", (Arg("deadline_ns", doc="monotonic time to wake at"),),
         "Block the caller until the monotonic clock reaches a deadline.",
         family="threads", blocking=True),
    Call(6, "random_bytes", (_buf_out("buf", "size", "filled with random bytes"), Arg("size")),
         "Fill a buffer from the run's seeded generator.", family="process",
         cost="copy", errors=("EFAULT",), returns="count"),
    Call(7, "cmdline", (_buf_out("buf", "size", "receives the NUL-terminated command line"),
                        Arg("size", doc="buffer size")),
         "Copy the command line; returns its full length including the NUL.",
         family="process", cost="copy", errors=("EFAULT",), returns="count"),
)

PICO_ABI = Abi(
    name="pico",
    version=1,
    calls=CALLS,
    errors=ERRORS,
    cost_classes=COST_CLASSES,
    extra_structs=(BOOT_INFO,),
    doc="picosim's Drawbridge-style picoprocess ABI.",
)
