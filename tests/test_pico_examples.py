"""The library OS example apps, run on the pico personality."""

from __future__ import annotations

import os

import simpy
from picohelp import EXAMPLES, build, needs_gcc, run

from sim.boot import guest_process
from sim.guest import Guest
from sim.image import Image
from sim.libos.pico_streams import SimHost

PREBUILT = EXAMPLES / "prebuilt"


def test_mt_compute_result_is_independent_of_the_slice():
    outs = set()
    for slice_insns in (1_000_000, 5_000, 333):
        result, out, sink, _ = run(PREBUILT / "mt_compute.elf", "4", "32", slice_insns=slice_insns)
        assert result.stopped.status == 0, result.stopped.reason
        outs.add(out)
    assert len(outs) == 1
    assert b"4 threads, 32768 bytes hashed" in outs.pop()


def test_small_slices_switch_threads_more(tmp_path):
    _, _, sink_big, g1 = run(PREBUILT / "mt_compute.elf", "3", "32", slice_insns=1_000_000)
    _, _, sink_small, g2 = run(PREBUILT / "mt_compute.elf", "3", "32", slice_insns=2_000)
    assert g2.personality.sched.switches > g1.personality.sched.switches


def test_filecopy_stays_in_its_sandbox(tmp_path):
    box = tmp_path / "box"
    result, out, _, _ = run(PREBUILT / "filecopy.elf", "8", options={"pico.sandbox": str(box)})
    assert result.stopped.status == 0, out
    assert b"identical" in out
    assert sorted(p.name for p in box.rglob("*")) == ["data", "out.bin"]
    assert (box / "data" / "out.bin").stat().st_size == 8 * 1024
    assert sorted(p.name for p in tmp_path.iterdir()) == ["box"]


def test_forbidden_reports_every_denial():
    result, out, sink, g = run(PREBUILT / "forbidden.elf")
    assert result.stopped.status == 0, out.decode()
    assert b"UNEXPECTED" not in out
    denials = [e for e in sink.events if e.kind == "monitor"]
    assert {e.fields["call"] for e in denials} >= {"stream_open", "stream_connect",
                                                    "stream_listen", "vm_alloc", "thread_create"}
    assert "monitor denied" in g.personality.surface_summary()


def test_kv_server_and_client_on_one_host():
    env = simpy.Environment()
    host = SimHost(latency_ns=5_000, env=env)
    outs = {"kv_server": bytearray(), "kv_client": bytearray()}
    guests = []
    from sim.libos.personality import BootConfig

    for name in ("kv_server", "kv_client"):
        cfg = BootConfig(args=(name,), options={"pico.host": host})
        guests.append(Guest(Image.load(PREBUILT / f"{name}.elf"), cfg, name=name, env=env,
                            on_console=outs[name].extend))
    procs = [env.process(guest_process(env, g)) for g in guests]
    env.run(until=simpy.AllOf(env, procs))
    for g in guests:
        assert g.stopped.status == 0, g.stopped.reason
        g.close()
    assert b"served 201 requests" in outs["kv_server"]
    assert b"200 requests, 0 bad replies" in outs["kv_client"]
    # Each round trip pays the link latency twice.
    rtt = int(outs["kv_client"].split(b"mean round trip ")[1].split()[0])
    assert rtt >= 10_000


@needs_gcc
def test_pipe_between_threads_and_deadlock_is_contained(tmp_path):
    app = r"""
#include <picolibos.h>
static long rd;
static char got[64];
static void reader(void *arg) { (void)arg; pl_read_full(rd, got, 11); }
int main(void)
{
    long wr = pl_open("pipe:p", PL_OPEN_WRITE);
    rd = pl_open("pipe:p", PL_OPEN_READ);
    pl_thread_t t;
    pl_thread_create(&t, reader, 0);
    pl_write(wr, "hello world", 11);
    pl_thread_join(&t);
    printf("got %s\n", got);
    pico_futex_wait((uint64_t)(uintptr_t)&rd, (uint32_t)rd, 0);  /* nobody wakes us */
    return 0;
}
"""
    policy = ('[pico]\ncalls = ["*"]\nuris = ["console:", "pipe:*"]\nmemory = "1MiB"\n'
              'threads = 2\n')
    img = build(tmp_path, app, "pipe", policy)
    result, out, _, _ = run(img)
    assert out == b"got hello world\n"
    assert result.stopped.status == 126 and "deadlock" in result.stopped.reason


def test_cli_peer_option(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "sim", "boot", str(PREBUILT / "kv_server.elf"),
                           "--peer", str(PREBUILT / "kv_client.elf"), "--peer-args", "20"],
                          capture_output=True, text=True, timeout=120, env={**os.environ})
    assert proc.returncode == 0, proc.stderr
    assert "served 21 requests" in proc.stdout
    assert "[kv_client] kv_client: 20 requests, 0 bad replies" in proc.stderr
    assert "surface" in proc.stderr


GUESTS = EXAMPLES.parent.parent / "tests" / "guests" / "pico"
THREADED_HEAP = '[pico]\ncalls = ["*"]\nuris = ["console:"]\nthreads = 8\nmemory = "4 MiB"\n'


@needs_gcc
def test_threads_share_the_heap_whatever_the_slice(tmp_path):
    # Preempted inside malloc or free, a thread must not corrupt the heap.
    image = build(tmp_path, GUESTS / "mtheap.c", "mtheap", THREADED_HEAP)
    waits = []
    for slice_insns in (317, 1_000, 20_000):
        result, out, _, guest = run(image, "300", slice_insns=slice_insns)
        assert result.stopped.status == 0, (slice_insns, out, result.stopped.reason)
        assert out.startswith(b"SUCCESS: 0 failures"), out
        waits.append(guest.personality.monitor.used["futex_wait"])
    assert waits[0] > 0  # short slices did preempt threads holding the heap lock


@needs_gcc
def test_a_full_pipe_makes_the_writer_wait(tmp_path):
    # Backpressure: the writer cannot put more than the pipe's capacity
    # ahead of a slow reader, so it finishes only when the reader has all
    # but the last capacity's worth; no byte is lost or reordered.
    image = build(tmp_path, GUESTS / "flood.c", "flood",
                  '[pico]\ncalls = ["*"]\nuris = ["console:", "pipe:*"]\n')
    from sim.libos.personality import BootConfig

    total, capacity = 96 * 1024, 16 * 1024
    env = simpy.Environment()
    host = SimHost(capacity=capacity, env=env)
    outs = {"w": bytearray(), "r": bytearray()}
    guests = [Guest(Image.load(image), BootConfig(args=("flood", str(total), role),
                                                  options={"pico.host": host}),
                    name=role, env=env, on_console=outs[role].extend) for role in ("w", "r")]
    procs = [env.process(guest_process(env, g)) for g in guests]
    env.run(until=simpy.AllOf(env, procs))
    for g in guests:
        assert g.stopped.status == 0, (g.stopped.reason, outs)
        g.close()
    assert outs["r"].startswith(f"reader: {total} bytes, 0 bad".encode())
    assert host.pipes["flood"].peak <= capacity
    writer_done = int(outs["w"].split(b"t=")[1])
    reader_done = int(outs["r"].split(b"t=")[1])
    # The reader takes 1000 bytes per 20 us: the writer waited for all but
    # the last `capacity` bytes to be read.
    assert writer_done >= (total - capacity) // 1000 * 20_000
    assert reader_done - writer_done <= (capacity // 1000 + 2) * 25_000


def test_pipe_capacity_option_is_checked():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "sim", "boot", str(PREBUILT / "hello.elf"),
                           "--pipe-capacity", "0"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "--pipe-capacity" in proc.stderr


@needs_gcc
def test_a_full_nonblocking_pipe_says_eagain(tmp_path):
    app = r"""
#include <picolibos.h>
static char chunk[10000];
int main(void)
{
    long wr = pico_stream_open("pipe:nb", 7, PL_OPEN_WRITE | PL_OPEN_NONBLOCK);
    long rd = pl_open("pipe:nb", PL_OPEN_READ);
    long total = 0, n;
    while ((n = pico_stream_write(wr, chunk, sizeof chunk)) > 0)
        total += n;
    printf("wrote %ld then %s\n", total, pl_strerror(n));
    pico_sleep_until(pico_clock_monotonic() + 1000000);  /* let it all arrive */
    long got = pico_stream_read(rd, chunk, 4096);
    printf("read %ld, then wrote %ld\n", got, pico_stream_write(wr, chunk, sizeof chunk));
    return 0;
}
"""
    img = build(tmp_path, app, "nb", '[pico]\ncalls = ["*"]\nuris = ["console:", "pipe:*"]\n')
    result, out, _, _ = run(img)
    assert result.stopped.status == 0, out
    assert out == b"wrote 65536 then EAGAIN\nread 4096, then wrote 4096\n"
