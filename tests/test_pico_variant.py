"""The researcher's workflow: a variant ABI with a batched write, end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from picohelp import build, needs_gcc, run

from sim.libos.abi_c import c_header
from sim.libos.abi_module import load_abi_module

VARIANT = Path(__file__).resolve().parent.parent / "docs" / "examples" / "batched_abi.py"

APP = r"""
#include <picosim.h>
#include "pico_abi.h"
#define RECORDS 256
int main(void)
{
    long h = pico_stream_open("console:", 8, 2);
    char recs[16][32];
    int lens[16];
#ifdef BATCHED
    struct pico_iovec iov[16];
#endif
    for (int r = 0; r < RECORDS; r += 16) {
        for (int i = 0; i < 16; i++)
            lens[i] = snprintf(recs[i], sizeof recs[i], "record %d\n", r + i);
#ifdef BATCHED
        for (int i = 0; i < 16; i++) {
            iov[i].buf = (uint64_t)(uintptr_t)recs[i];
            iov[i].len = (uint64_t)lens[i];
        }
        if (pico_stream_writev(h, iov, sizeof iov) < 0)
            return 1;
#else
        for (int i = 0; i < 16; i++)
            if (pico_stream_write(h, recs[i], (uint64_t)lens[i]) < 0)
                return 1;
#endif
    }
    return 0;
}
"""
POLICY = '[pico]\ncalls = ["family:process", "family:streams"]\nuris = ["console:"]\n'


def test_variant_adds_a_call_to_the_header():
    mod = load_abi_module(VARIANT)
    assert "stream_writev" in mod.abi.by_name
    header = c_header(mod.abi)
    assert "PICO_NR_STREAM_WRITEV 50" in header
    assert "static inline long pico_stream_writev(" in header
    cli = subprocess.run([sys.executable, "-m", "sim", "abi", "header", "--abi-module", str(VARIANT)],
                         capture_output=True, text=True, check=True)
    assert "pico_stream_writev" in cli.stdout


@needs_gcc
def test_batched_write_crosses_less_and_takes_less_time(tmp_path):
    mod = load_abi_module(VARIANT)
    plain = build(tmp_path, APP, "plain", POLICY, abi=mod.abi)
    batched = build(tmp_path, APP, "batched", POLICY, abi=mod.abi, cflags=("-DBATCHED",))
    opts = {"pico.abi_module": mod}
    r1, out1, _, g1 = run(plain, options=opts)
    r2, out2, _, g2 = run(batched, options=opts)
    assert r1.stopped.status == 0 and r2.stopped.status == 0
    assert out1 == out2 and out1.count(b"\n") == 256
    assert r2.crossings * 8 < r1.crossings  # 16 records per crossing instead of 1
    assert r2.t_ns < r1.t_ns
    assert "stream_writev" in g2.personality.surface_summary()
    assert "stream_writev" not in g1.personality.surface_summary()


@needs_gcc
def test_image_built_for_variant_gets_enosys_without_it(tmp_path):
    mod = load_abi_module(VARIANT)
    img = build(tmp_path, APP, "app", POLICY, abi=mod.abi, cflags=("-DBATCHED",))
    result, out, _, _ = run(img)
    assert result.stopped.status == 1 and out == b""
