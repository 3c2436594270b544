"""The guest SDK: the build, the images it makes, the generated header, and
the libc itself (compiled natively and checked against the host's libc)."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

import pytest

from sim.image import Image
from sim.libos.abi_c import c_header
from sim.libos.pico_abi import PICO_ABI
from sim.sdk.build import INCLUDE_DIR, SDK_DIR, TARGETS, BuildError, build_app
from sim.sdk.commands import register

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")

APP = r"""
#include <picosim.h>
int main(int argc, char **argv)
{
    printf("%d %s\n", argc, argv[0]);
    return 3;
}
"""


def _app(tmp_path: Path, text: str = APP, name: str = "app.c") -> Path:
    src = tmp_path / name
    src.write_text(text)
    return src


# ------------------------------------------------------------------ the build
@needs_gcc
def test_build_makes_a_valid_pico_image(tmp_path):
    out = build_app([_app(tmp_path)], tmp_path / "app.elf")
    img = Image.load(out)
    assert img.abi == "pico"
    assert img.entry == img.symbol_address("_start")
    for name in ("main", "sdk_start", "sdk_pico_start", "printf", "malloc", "_end",
                 "__stack_chk_guard", "__stack_chk_fail"):
        img.symbol_address(name)  # raises if missing
    segs = [s for s in img.segments if s.memsz]
    assert [s.perms for s in segs] == ["r-x", "r--", "rw-"]
    assert not any(s.writable and s.executable for s in segs)
    assert segs[0].vaddr == 0x100000 and all(s.vaddr % 0x1000 == 0 for s in segs)
    assert img.symbol_address("_end") % 0x1000 == 0
    assert img.symbol_address("_end") >= max(s.vaddr + s.memsz for s in segs)


@needs_gcc
def test_build_is_reproducible_wherever_it_runs(tmp_path):
    a = build_app([_app(tmp_path)], tmp_path / "a" / "app.elf", workdir=tmp_path / "wa")
    other = tmp_path / "elsewhere"
    other.mkdir()
    b = build_app([_app(other)], tmp_path / "b" / "app.elf", workdir=tmp_path / "wb")
    assert a.read_bytes() == b.read_bytes()


@needs_gcc
def test_header_is_generated_into_the_build_dir_only(tmp_path):
    build_app([_app(tmp_path)], tmp_path / "app.elf", workdir=tmp_path / "w")
    assert (tmp_path / "w" / "include" / "pico_abi.h").read_text() == c_header(PICO_ABI)
    assert not list(SDK_DIR.rglob("*_abi.h"))


@needs_gcc
def test_compile_error_is_one_build_error_with_gccs_message(tmp_path):
    src = _app(tmp_path, "int main(void) { return undeclared_thing; }\n", "bad.c")
    with pytest.raises(BuildError) as e:
        build_app([src], tmp_path / "bad.elf")
    assert "gcc failed to build bad.elf" in str(e.value)
    assert "undeclared_thing" in str(e.value)
    assert not (tmp_path / "bad.elf").exists()


def test_bad_requests_are_build_errors(tmp_path):
    with pytest.raises(BuildError, match="unknown target 'nope'"):
        build_app([tmp_path / "x.c"], tmp_path / "x.elf", target="nope")
    with pytest.raises(BuildError, match="does not exist"):
        build_app([tmp_path / "missing.c"], tmp_path / "x.elf")
    with pytest.raises(BuildError, match="no source files"):
        build_app([], tmp_path / "x.elf")


def test_target_table_rows_point_at_real_files():
    for target in TARGETS.values():
        for rel in (*target.sources, target.linker_script):
            assert (SDK_DIR / rel).is_file(), rel
    assert TARGETS["pico"].default_abi() is PICO_ABI


@needs_gcc
def test_generated_header_compiles_cleanly(tmp_path):
    """Every stub of the header, with the SDK headers, under -Wall -Wextra -Werror."""
    (tmp_path / "pico_abi.h").write_text(c_header(PICO_ABI))
    calls = "\n".join(
        f"    r += pico_{c.name}({', '.join('0' for _ in c.args)});" for c in PICO_ABI.calls)
    src = _app(tmp_path, f"""
#include "pico_abi.h"
#include <picosim.h>
#include <sdk_backend.h>
long use_all(void)
{{
    long r = 0;
    struct pico_boot_info bi = {{0}};
    r += (long)bi.stack_top + PICO_EFAULT + PICO_NR_EXIT;
{calls}
    return r;
}}
""", "hdr.c")
    proc = subprocess.run(["gcc", "-std=gnu11", "-ffreestanding", "-Wall", "-Wextra", "-Werror",
                           "-I", str(tmp_path), "-I", str(INCLUDE_DIR), "-c", str(src),
                           "-o", str(tmp_path / "hdr.o")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


@needs_gcc
def test_sdk_sources_compile_without_warnings(tmp_path):
    src = _app(tmp_path)
    # -Werror: any warning in the SDK's own sources fails the build (BuildError).
    out = build_app([src], tmp_path / "app.elf", cflags=("-Wextra", "-Werror"))
    assert out.exists() and out.stat().st_size > 0


# ---------------------------------------------------------------- sim build
def _parser():
    p = argparse.ArgumentParser(prog="sim")
    register(p.add_subparsers())
    return p


@needs_gcc
def test_build_command(tmp_path, capsys):
    args = _parser().parse_args(["build", str(_app(tmp_path)), "-o", str(tmp_path / "c.elf")])
    assert args.func(args) == 0
    assert Image.load(tmp_path / "c.elf").abi == "pico"
    assert "c.elf" in capsys.readouterr().out


@needs_gcc
def test_build_command_with_abi_module(tmp_path):
    mod = tmp_path / "variant.py"
    mod.write_text("from sim.libos.pico_abi import PICO_ABI\n"
                   "ABI = PICO_ABI.derive('pico', version=PICO_ABI.version + 7)\n")
    src = _app(tmp_path, '#include <picosim.h>\n#include "pico_abi.h"\n'
               "int main(void) { return PICO_ABI_VERSION; }\n")
    work = tmp_path / "w"
    args = _parser().parse_args(["build", str(src), "-o", str(tmp_path / "v.elf"),
                                 "--abi-module", str(mod), "--workdir", str(work)])
    assert args.func(args) == 0
    assert "#define PICO_ABI_VERSION 8" in (work / "include" / "pico_abi.h").read_text()


def test_build_command_errors_are_one_line_and_status_1(tmp_path, capsys):
    args = _parser().parse_args(["build", str(tmp_path / "nope.c"), "-o", str(tmp_path / "x")])
    assert args.func(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("sim build: ") and "does not exist" in err
    bad = tmp_path / "bad_abi.py"
    bad.write_text("ABI = 42\n")
    args = _parser().parse_args(["build", str(_app(tmp_path)), "-o", str(tmp_path / "x"),
                                 "--abi-module", str(bad)])
    assert args.func(args) == 1
    assert "must define ABI" in capsys.readouterr().err


# ------------------------------------------------- the libc, run natively
# The libc is portable C: compile it for the host, rename its symbols with a
# t_ prefix (so it cannot collide with the host libc), and drive it from a
# hosted test program that compares it with the host's own printf.
LIBC = ("string.c", "printf.c", "malloc.c", "stdlib.c")

DRIVER_HEAD = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <stdarg.h>

int t_snprintf(char *, size_t, const char *, ...);
int t_printf(const char *, ...);
int t_puts(const char *);
void *t_malloc(size_t);
void t_free(void *);
void *t_calloc(size_t, size_t);
void *t_realloc(void *, size_t);
void t_sdk_heap_init(void *, void *);
void t_sdk_heap_stats(size_t *, size_t *);
void *t_memcpy(void *, const void *, size_t);
void *t_memmove(void *, const void *, size_t);
void *t_memset(void *, int, size_t);
int t_memcmp(const void *, const void *, size_t);
size_t t_strlen(const char *);
int t_strcmp(const char *, const char *);
int t_strncmp(const char *, const char *, size_t);
char *t_strcpy(char *, const char *);
char *t_strncpy(char *, const char *, size_t);
char *t_strchr(const char *, int);
char *t_strrchr(const char *, int);
char *t_strstr(const char *, const char *);
int t_atoi(const char *);
long t_strtol(const char *, char **, int);
unsigned long t_strtoul(const char *, char **, int);

/* The backend the libc calls (prefixed like the rest). */
char console[4096];
size_t console_len;
void t_sdk_backend_write(const char *b, size_t n)
{ memcpy(console + console_len, b, n); console_len += n; }
void t_sdk_backend_exit(int s) { fprintf(stderr, "exit %d\n", s); exit(s); }
void t_sdk_backend_abort(void) { fprintf(stderr, "abort: %.*s\n", (int)console_len, console); exit(99); }
uint64_t t_sdk_backend_clock_ns(void) { return 1; }
uint64_t t_sdk_backend_wall_ns(void) { return 2; }
void t_sdk_backend_sleep_ns(uint64_t ns) { (void)ns; }
int t_sdk_backend_random(void *b, size_t n) { memset(b, 7, n); return 0; }
void t_sdk_backend_heap_lock(void) { }
void t_sdk_backend_heap_unlock(void) { }

static int failures;
#define CHECK(cond) do { if (!(cond)) { printf("FAIL line %d: %s\n", __LINE__, #cond); failures++; } } while (0)
"""


def _run_native(tmp_path: Path, body: str) -> str:
    objs = []
    for name in LIBC:
        obj = tmp_path / f"{name}.o"
        cmd = ["gcc", "-std=gnu11", "-O2", "-Wall", "-Werror", "-fno-builtin", "-fno-pic",
               "-fno-stack-protector", "-fno-tree-loop-distribute-patterns",
               "-I", str(INCLUDE_DIR), "-c", str(SDK_DIR / "libc" / name), "-o", str(obj)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        subprocess.run(["objcopy", "--prefix-symbols=t_", str(obj)], check=True)
        objs.append(str(obj))
    driver = tmp_path / "driver.c"
    driver.write_text(DRIVER_HEAD + body)
    exe = tmp_path / "driver"
    proc = subprocess.run(["gcc", "-std=gnu11", "-O1", "-no-pie", "-fno-pic", "-Wall",
                           "-Wno-format-zero-length", str(driver), *objs, "-o", str(exe)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0 and "FAIL" not in run.stdout, run.stdout + run.stderr
    return run.stdout


# (format, C argument list) pairs: t_snprintf must agree with the host's snprintf.
FORMATS = [
    ("plain text", ""), ("%%", ""), ("%d", "0"), ("%d", "42"), ("%d", "-42"),
    ("%i", "2147483647"), ("%d", "(-2147483647 - 1)"), ("%u", "4294967295u"),
    ("%5d|%-5d|%05d", "42, 42, 42"), ("%-05d|", "-7"), ("%+d % d %+d", "5, 5, -5"),
    ("%x %X %#x %#X %#x", "0xbeefu, 0xbeefu, 255u, 255u, 0u"), ("%08x", "0xabcu"),
    ("%o %#o", "8u, 8u"), ("%ld", "-1234567890123L"), ("%lu", "18446744073709551615UL"),
    ("%lx", "0xfedcba9876543210UL"), ("%llu", "18446744073709551615ULL"),
    ("%lld", "(-9223372036854775807LL - 1)"), ("%zu", "(size_t)123456"),
    ("%hhd %hd %hhu", "300, 70000, 511"), ("%s", '"hello"'), ("[%10s]", '"right"'),
    ("[%-10s]", '"left"'), ("[%.3s]", '"truncate"'), ("[%*d] [%-*d]", "6, 1, 6, 2"),
    ("[%.*s]", '2, "abc"'), ("%c%c%c", "'a', 'b', 'c'"), ("[%3c] [%-3c]", "'x', 'y'"),
    ("%.5d %.0d| %8.3d", "42, 0, 7"), ("%p", "(void *)0x1234"), ("%20p|", "(void *)0xdeadbeef"),
    ("%p", "(void *)0"), ("%s=%d, %s=%x", '"a", 1, "b", 0x10u'),
]


@needs_gcc
def test_snprintf_agrees_with_the_host_libc(tmp_path):
    cases = []
    for fmt, args in FORMATS:
        comma = ", " if args else ""
        cases.append(f"""
    {{
        char mine[256], host[256];
        int a = t_snprintf(mine, sizeof mine, "{fmt}"{comma}{args});
        int b = snprintf(host, sizeof host, "{fmt}"{comma}{args});
        if (a != b || strcmp(mine, host) != 0) {{
            printf("FAIL %s: mine [%s] %d, host [%s] %d\\n", "{fmt}", mine, a, host, b);
            failures++;
        }}
    }}""")
    body = "int main(void)\n{" + "".join(cases) + r"""
    /* Truncation: returns the full length, always terminates. */
    char small[6];
    CHECK(t_snprintf(small, sizeof small, "%s-%d", "abcdef", 12345) == 12);
    CHECK(strcmp(small, "abcde") == 0);
    CHECK(t_snprintf(NULL, 0, "%d", 123456) == 6);
    /* printf goes to the backend in one write for short output. */
    console_len = 0;
    CHECK(t_printf("x=%d %s\n", 5, "y") == 6);
    t_puts("line");
    CHECK(console_len == 11 && memcmp(console, "x=5 y\nline\n", 11) == 0);
    /* Output longer than printf's buffer is flushed in pieces, none lost. */
    console_len = 0;
    char big[1001];
    memset(big, 'q', 1000); big[1000] = 0;
    CHECK(t_printf("<%s>", big) == 1002 && console_len == 1002 && console[1001] == '>');
    printf("%d failures\n", failures);
    return failures != 0;
}
"""
    assert "0 failures" in _run_native(tmp_path, body)


@needs_gcc
def test_string_and_number_functions(tmp_path):
    body = r"""
int main(void)
{
    char buf[64];
    CHECK(t_strlen("") == 0 && t_strlen("hello") == 5);
    CHECK(t_strcmp("abc", "abc") == 0 && t_strcmp("abc", "abd") < 0 && t_strcmp("b", "a") > 0);
    CHECK(t_strcmp("ab", "abc") < 0 && t_strcmp("\xff", "a") > 0);
    CHECK(t_strncmp("abcX", "abcY", 3) == 0 && t_strncmp("abcX", "abcY", 4) < 0);
    CHECK(t_strcmp(t_strcpy(buf, "copy me"), "copy me") == 0);
    memset(buf, 'z', sizeof buf);
    t_strncpy(buf, "ab", 5);
    CHECK(memcmp(buf, "ab\0\0\0z", 6) == 0);
    const char *s = "hello world";
    CHECK(t_strchr(s, 'o') == s + 4 && t_strrchr(s, 'o') == s + 7 && t_strchr(s, 'q') == NULL);
    CHECK(t_strchr(s, 0) == s + 11 && t_strrchr(s, 0) == s + 11);
    CHECK(t_strstr(s, "world") == s + 6 && t_strstr(s, "") == s && t_strstr(s, "worlds") == NULL);
    CHECK(t_memcmp("ab", "ac", 2) < 0 && t_memcmp("ab", "ac", 1) == 0);
    /* memmove both ways, memcpy, memset */
    char m[16] = "0123456789";
    t_memmove(m + 2, m, 5);
    CHECK(memcmp(m, "0101234789", 10) == 0);
    t_memmove(m, m + 3, 5);
    CHECK(memcmp(m, "1234734789", 10) == 0);
    CHECK(t_memcpy(buf, "xyz", 4) == buf && strcmp(buf, "xyz") == 0);
    CHECK(t_memset(buf, 'k', 3) == buf && memcmp(buf, "kkk", 3) == 0);
    /* numbers, compared with the host */
    const char *nums[] = {"0", "42", "-17", "  +9", "0x1f", "0777", "123abc", "abc", "-0x10",
                          "18446744073709551615", "99999999999999999999", "9223372036854775808",
                          "-9223372036854775809", "0x", ""};
    int bases[] = {0, 10, 16, 8};
    for (unsigned i = 0; i < sizeof nums / sizeof *nums; i++)
        for (unsigned j = 0; j < 4; j++) {
            char *e1, *e2;
            unsigned long a = t_strtoul(nums[i], &e1, bases[j]);
            unsigned long b = strtoul(nums[i], &e2, bases[j]);
            if (a != b || e1 - nums[i] != e2 - nums[i]) {
                printf("FAIL strtoul(%s, %d): %lu/%td vs %lu/%td\n", nums[i], bases[j],
                       a, e1 - nums[i], b, e2 - nums[i]);
                failures++;
            }
            long c = t_strtol(nums[i], &e1, bases[j]);
            long d = strtol(nums[i], &e2, bases[j]);
            if (c != d || e1 - nums[i] != e2 - nums[i]) {
                printf("FAIL strtol(%s, %d): %ld vs %ld\n", nums[i], bases[j], c, d);
                failures++;
            }
        }
    CHECK(t_atoi("123") == 123 && t_atoi("-5x") == -5 && t_atoi("x") == 0);
    printf("%d failures\n", failures);
    return failures != 0;
}
"""
    assert "0 failures" in _run_native(tmp_path, body)


@needs_gcc
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_malloc_stress(tmp_path, seed):
    """Random allocations, frees and reallocs with pattern checks; at the end
    everything freed has merged back into one block."""
    body = r"""
#define ARENA (1 << 20)
#define SLOTS 200
static unsigned char arena[ARENA] __attribute__((aligned(16)));
static unsigned char *ptr[SLOTS];
static size_t len[SLOTS];
static unsigned rng = SEED;
static unsigned next(void) { rng = rng * 1103515245u + 12345u; return rng >> 8; }

static void fill(int i) { for (size_t k = 0; k < len[i]; k++) ptr[i][k] = (unsigned char)(i * 31 + k); }
static int intact(int i) {
    for (size_t k = 0; k < len[i]; k++) if (ptr[i][k] != (unsigned char)(i * 31 + k)) return 0;
    return 1;
}

int main(void)
{
    t_sdk_heap_init(arena + 3, arena + ARENA - 5); /* unaligned ends get trimmed */
    size_t free0, largest0;
    t_sdk_heap_stats(&free0, &largest0);
    CHECK(free0 == largest0 && free0 > ARENA - 64);
    for (int round = 0; round < 20000; round++) {
        int i = next() % SLOTS;
        if (ptr[i]) {
            if (!intact(i)) { printf("FAIL corrupted slot %d\n", i); return 1; }
            if (next() % 4 == 0) {
                size_t n = next() % 3000;
                unsigned char *q = t_realloc(ptr[i], n ? n : 1);
                CHECK(q != NULL && ((uintptr_t)q & 15) == 0);
                size_t keep = len[i] < n ? len[i] : n;
                for (size_t k = 0; k < keep; k++)
                    CHECK(q[k] == (unsigned char)(i * 31 + k));
                ptr[i] = q;
                len[i] = n;
                fill(i);
            } else {
                t_free(ptr[i]);
                ptr[i] = NULL;
            }
        } else {
            size_t n = next() % 4 == 0 ? next() % 20000 : next() % 200;
            ptr[i] = next() % 2 ? t_malloc(n) : t_calloc(1, n);
            CHECK(ptr[i] != NULL);
            CHECK(((uintptr_t)ptr[i] & 15) == 0);
            CHECK((unsigned char *)ptr[i] >= arena && (unsigned char *)ptr[i] + n <= arena + ARENA);
            len[i] = n;
            fill(i);
        }
    }
    for (int i = 0; i < SLOTS; i++) {
        if (ptr[i]) { CHECK(intact(i)); t_free(ptr[i]); }
    }
    size_t free1, largest1;
    t_sdk_heap_stats(&free1, &largest1);
    CHECK(free1 == free0 && largest1 == largest0);
    /* Exhaustion gives NULL, calloc overflow gives NULL, free(NULL) is fine. */
    CHECK(t_malloc(ARENA) == NULL);
    CHECK(t_calloc((size_t)1 << 40, (size_t)1 << 40) == NULL);
    t_free(NULL);
    void *all = t_malloc(largest0);
    CHECK(all != NULL && t_malloc(1) == NULL);
    t_free(all);
    unsigned char *z = t_calloc(100, 10);
    int zero = 1;
    for (int k = 0; k < 1000; k++) zero &= z[k] == 0;
    CHECK(zero);
    printf("%d failures\n", failures);
    return failures != 0;
}
"""
    assert "0 failures" in _run_native(tmp_path, body.replace("SEED", str(seed * 7919)))


@needs_gcc
def test_double_free_aborts(tmp_path):
    body = r"""
static unsigned char arena[4096] __attribute__((aligned(16)));
int main(void)
{
    t_sdk_heap_init(arena, arena + sizeof arena);
    void *p = t_malloc(10);
    t_free(p);
    t_free(p);
    printf("FAIL: survived a double free\n");
    return 0;
}
"""
    with pytest.raises(AssertionError) as e:
        _run_native(tmp_path, body)
    assert "double free" in str(e.value) and "FAIL" not in str(e.value).split("abort:")[0][-5:]
