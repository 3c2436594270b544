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

# Protection bits of vm_alloc / vm_protect (W and X together are refused: W^X).
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
# stream_open flags.
OPEN_READ, OPEN_WRITE, OPEN_CREATE, OPEN_TRUNCATE, OPEN_APPEND, OPEN_NONBLOCK = 1, 2, 4, 8, 16, 32
# Handle kinds reported by handle_attr.
KIND_CONSOLE, KIND_FILE, KIND_PIPE, KIND_CHANNEL, KIND_LISTENER, KIND_THREAD, KIND_EVENT = range(1, 8)

PROCESS_INFO = Struct("pico_process_info", (
    Field("mem_quota", "u64", Dir.OUT, "bytes vm_alloc may hand out in all"),
    Field("mem_used", "u64", Dir.OUT, "bytes currently allocated by vm_alloc"),
    Field("vm_start", "u64", Dir.OUT, "start of the area vm_alloc serves"),
    Field("vm_end", "u64", Dir.OUT, "end of that area"),
    Field("threads", "u32", Dir.OUT, "threads alive now"),
    Field("thread_limit", "u32", Dir.OUT, "most threads alive at once"),
    Field("handles", "u32", Dir.OUT, "handles open now"),
    Field("handle_limit", "u32", Dir.OUT, "most handles open at once"),
), doc="what the monitor grants this picoprocess")

HANDLE_ATTR = Struct("pico_handle_attr", (
    Field("kind", "u32", Dir.OUT, "KIND_* of the handle"),
    Field("flags", "u32", Dir.OUT, "OPEN_* flags it was opened with"),
    Field("size", "u64", Dir.OUT, "file: its size in bytes"),
    Field("offset", "u64", Dir.OUT, "file: the next read/write position"),
    Field("readable", "u64", Dir.OUT, "bytes readable now without blocking"),
    Field("status", "i64", Dir.OUT, "thread: exit status; event: 1 if set; stream: 1 at end"),
), doc="what handle_attr reports about a handle")

IOVEC = Struct("pico_iovec", (
    Field("buf", "u64", doc="guest address of the bytes"),
    Field("len", "u64", doc="byte count"),
), doc="one piece of a gathered write (used by variant ABIs)")

_P = "process"
_M = "memory"
_T = "threads"
_S = "streams"


def _uri(doc: str = "URI naming the stream (console:, file:, pipe:, chan:)") -> tuple[Arg, Arg]:
    return (Arg("uri", "ptr", Dir.IN, length="uri_len", text=True, max_len=1024, doc=doc),
            Arg("uri_len", doc="byte length of the URI"))


_H = Arg("handle", "handle", doc="a handle from this picoprocess's table")

CALLS = (
    # -- process ----------------------------------------------------------
    Call(1, "exit", (Arg("status", "i64", doc="exit status of the guest"),),
         "End the picoprocess (all its threads) with a status.", family=_P),
    Call(2, "console_write", (_buf_in("buf", "size", "bytes to write"), Arg("size", doc="byte count")),
         "Write bytes to the console; returns the count written.", family=_P,
         cost="copy", errors=("EFAULT",), returns="count"),
    Call(3, "clock_monotonic", (), "Nanoseconds of simulated time since boot.",
         family=_P, returns="value", reads_clock="monotonic"),
    Call(4, "clock_wall", (), "Nanoseconds since the Unix epoch (simulated).",
         family=_P, returns="value", reads_clock="wall"),
    Call(5, "sleep_until", (Arg("deadline_ns", doc="monotonic time to wake at"),),
         "Block the calling thread until the monotonic clock reaches a deadline.",
         family=_T, blocking=True),
    Call(6, "random_bytes", (_buf_out("buf", "size", "filled with random bytes"), Arg("size")),
         "Fill a buffer from the run's seeded generator.", family=_P,
         cost="copy", errors=("EFAULT",), returns="count"),
    Call(7, "cmdline", (_buf_out("buf", "size", "receives the NUL-terminated command line"),
                        Arg("size", doc="buffer size")),
         "Copy the command line; returns its full length including the NUL.",
         family=_P, cost="copy", errors=("EFAULT",), returns="count"),
    Call(8, "process_info", (Arg("info", "ptr", Dir.OUT, struct=PROCESS_INFO),),
         "Report the quotas and limits the monitor grants, and their use.",
         family=_P, errors=("EFAULT",)),
    Call(9, "debug_log", (_buf_in("buf", "size", "message", text=True), Arg("size")),
         "Put a message into the run's trace (not the console).", family=_P,
         cost="copy", errors=("EFAULT", "EINVAL")),
    # -- virtual memory -----------------------------------------------------
    Call(10, "vm_alloc", (Arg("size", doc="bytes, rounded up to 4 KiB pages"),
                          Arg("prot", "u32", doc="PROT_READ|PROT_WRITE or PROT_READ|PROT_EXEC")),
         "Map fresh zeroed private pages; returns their address.", family=_M, cost="memory",
         errors=("EINVAL", "ENOMEM"), returns="value"),
    Call(11, "vm_free", (Arg("addr", doc="start of a range vm_alloc returned"),
                         Arg("size", doc="bytes to unmap")),
         "Unmap whole pages that vm_alloc mapped and give them back to the quota.",
         family=_M, cost="memory", errors=("EINVAL",)),
    Call(12, "vm_protect", (Arg("addr"), Arg("size"), Arg("prot", "u32", doc="new PROT_* bits")),
         "Change the protection of vm_alloc pages (never writable and executable).",
         family=_M, cost="memory", errors=("EINVAL",)),
    # -- threads and synchronisation -------------------------------------------
    Call(20, "thread_create", (Arg("entry", doc="code address the thread starts at"),
                               Arg("arg", doc="value passed in rdi"),
                               Arg("stack_top", doc="initial rsp (16-byte aligned, writable)")),
         "Start a thread on this picoprocess's memory; returns its handle.", family=_T,
         cost="thread", errors=("EINVAL", "ELIMIT"), returns="handle"),
    Call(21, "thread_exit", (Arg("status", "i64", doc="status wait_any/handle_attr report"),),
         "End the calling thread; the last thread's exit ends the picoprocess.", family=_T,
         cost="thread"),
    Call(22, "thread_yield", (), "Give the core to the next ready thread.", family=_T,
         cost="thread"),
    Call(23, "thread_self", (), "The calling thread's handle.", family=_T, returns="handle"),
    Call(24, "futex_wait", (Arg("addr", doc="address of a 32-bit word"),
                            Arg("expected", "u32", doc="block only while *addr == expected"),
                            Arg("deadline_ns", doc="monotonic deadline, 0 = none")),
         "Block while a word holds a value, until futex_wake or the deadline.", family=_T,
         errors=("EFAULT", "EAGAIN", "ETIMEDOUT"), blocking=True),
    Call(25, "futex_wake", (Arg("addr", doc="address of a 32-bit word"),
                            Arg("count", "u32", doc="most threads to wake")),
         "Wake threads blocked in futex_wait on a word; returns how many.", family=_T,
         errors=("EFAULT",), returns="count"),
    Call(26, "event_create", (Arg("manual_reset", "u32", doc="1: stays set until cleared"),
                              Arg("initially_set", "u32")),
         "Create an event object; returns its handle.", family=_T,
         errors=("ELIMIT",), returns="handle"),
    Call(27, "event_set", (_H,), "Set an event, waking its waiters.", family=_T,
         errors=("EBADH",)),
    Call(28, "event_clear", (_H,), "Clear a manual-reset event.", family=_T, errors=("EBADH",)),
    Call(29, "wait_any", (Arg("handles", "ptr", Dir.IN, length="count_bytes",
                              doc="array of pico_handle_t"),
                          Arg("count_bytes", doc="8 x number of handles (at most 64)"),
                          Arg("deadline_ns", doc="monotonic deadline, 0 = none")),
         "Block until one handle is ready (event set, thread ended, stream readable, "
         "connection pending); returns its index.", family=_T,
         errors=("EFAULT", "EINVAL", "EBADH", "ETIMEDOUT"), returns="value", blocking=True),
    # -- streams ------------------------------------------------------------
    Call(40, "stream_open", (*_uri(), Arg("flags", "u32", doc="OPEN_* flags")),
         "Open a stream by URI (console:, file:NAME in the sandbox, pipe:NAME); "
         "returns a handle.", family=_S, cost="stream",
         errors=("EPERM", "EINVAL", "ENOENT", "EEXIST", "ELIMIT"), returns="handle"),
    Call(41, "stream_read", (_H, _buf_out("buf", "size", "receives the bytes"), Arg("size")),
         "Read up to size bytes; blocks until some are there (0 at end of stream).",
         family=_S, cost="copy", errors=("EBADH", "EFAULT", "EAGAIN"), returns="count",
         blocking=True),
    Call(42, "stream_write", (_H, _buf_in("buf", "size", "bytes to write"), Arg("size")),
         "Write bytes to a stream; returns the count written, which may be short on a "
         "pipe or channel; blocks while one is full.", family=_S, cost="copy",
         errors=("EBADH", "EFAULT", "EPIPE", "ENOSPC", "EAGAIN"), returns="count",
         blocking=True),
    Call(43, "handle_close", (_H,), "Close any handle (stream, listener, thread, event).",
         family=_S, errors=("EBADH",)),
    Call(44, "handle_attr", (_H, Arg("attr", "ptr", Dir.OUT, struct=HANDLE_ATTR)),
         "Describe a handle: kind, size, position, bytes readable, status.",
         family=_S, errors=("EBADH", "EFAULT")),
    Call(45, "stream_seek", (_H, Arg("offset", "u64", doc="new position from the start")),
         "Set a file stream's position.", family=_S, errors=("EBADH", "EINVAL")),
    Call(46, "stream_listen", _uri("chan:NAME to serve"),
         "Listen on a channel name of the simulated host; returns a listener handle.",
         family=_S, cost="stream", errors=("EPERM", "EINVAL", "EEXIST", "ELIMIT"),
         returns="handle"),
    Call(47, "stream_accept", (_H,),
         "Block until a peer connects to a listener; returns the connection's handle.",
         family=_S, cost="stream", errors=("EBADH", "ELIMIT"), returns="handle", blocking=True),
    Call(48, "stream_connect", _uri("chan:NAME to connect to"),
         "Connect to a listening channel; returns the connection's handle.",
         family=_S, cost="stream", errors=("EPERM", "EINVAL", "ENOENT", "ELIMIT"),
         returns="handle"),
    Call(49, "stream_delete", _uri("file:NAME to remove"),
         "Remove a file from the sandbox.", family=_S, cost="stream",
         errors=("EPERM", "EINVAL", "ENOENT")),
)

PICO_ABI = Abi(
    name="pico",
    version=1,
    calls=CALLS,
    errors=ERRORS,
    cost_classes=COST_CLASSES,
    extra_structs=(BOOT_INFO, IOVEC),
    doc="picosim's Drawbridge-style picoprocess ABI.",
)
