"""Build small static x86-64 ELF executables with the machine's gcc, for tests.

``build_elf`` compiles a freestanding C file (and optionally an assembly file)
into an ET_EXEC image loaded at 1 MiB, without W+X segments. The test that
calls it is skipped when gcc is missing. ``notes_asm`` turns note bytes into
assembly, one section (and, with ``notes_lds``, one PT_NOTE segment) per note,
the way Solo5 lays out its images. ``build_with_notes`` does both.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

CFLAGS = ("-nostdlib", "-static", "-no-pie", "-ffreestanding", "-fno-pic", "-O1",
          "-fno-stack-protector", "-fno-asynchronous-unwind-tables", "-fcf-protection=none")
LDFLAGS = ("-Wl,-z,noexecstack", "-Wl,-z,separate-code", "-Wl,--build-id=none",
           "-Wl,-z,max-page-size=0x1000", "-Wl,-z,norelro")
DEFAULT_LAYOUT = ("-Wl,-Ttext-segment=0x100000",)

def notes_lds(count: int) -> str:
    """A Solo5-like linker script: code, read-only data carrying ``count`` notes
    (each in its own PT_NOTE segment, as sections .note.n0, .note.n1, ...), then
    data and bss, each on its own pages."""
    phdrs = "".join(f"  note{k} PT_NOTE;\n" for k in range(count))
    notes = "".join(f"  .note.n{k} : {{ *(.note.n{k}) }} :rodata :note{k}\n"
                    for k in range(count))
    return f"""\
ENTRY(_start)
PHDRS {{
  text PT_LOAD FLAGS(5);
  rodata PT_LOAD FLAGS(4);
  data PT_LOAD FLAGS(6);
{phdrs}}}
SECTIONS {{
  . = 0x100000;
  .text : {{ *(.text .text.*) }} :text
  . = ALIGN(0x1000);
{notes}  .rodata : {{ *(.rodata .rodata.*) }} :rodata
  . = ALIGN(0x1000);
  .data : {{ *(.data .data.*) }} :data
  .bss : {{ *(.bss .bss.*) *(COMMON) }} :data
  /DISCARD/ : {{ *(.note.GNU-stack) *(.note.gnu.*) *(.comment) *(.eh_frame*) }}
}}
"""


def notes_asm(*notes: bytes) -> str:
    """Assembly placing each note (from sim.notes.build_note) in section .note.nK."""
    out = []
    for k, note in enumerate(notes):
        out.append(f'.section .note.n{k},"a",@note\n.p2align 2')
        for i in range(0, len(note), 16):
            out.append(".byte " + ",".join(str(b) for b in note[i:i + 16]))
    out.append('.section .note.GNU-stack,"",@progbits')
    return "\n".join(out) + "\n"


def build_elf(tmp_path: Path, c_source: str, asm_source: str | None = None,
              extra_ldflags: tuple[str, ...] | list[str] = (), *,
              linker_script: str | None = None, name: str = "x") -> Path:
    """Compile ``c_source`` (+ ``asm_source``) into ``tmp_path/<name>.elf``."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed: cannot build test ELF images")
    tmp_path = Path(tmp_path)
    tmp_path.mkdir(parents=True, exist_ok=True)
    c_file = tmp_path / f"{name}.c"
    c_file.write_text(c_source)
    sources = [str(c_file)]
    if asm_source is not None:
        s_file = tmp_path / f"{name}_notes.s"
        s_file.write_text(asm_source)
        sources.append(str(s_file))
    layout: tuple[str, ...] = DEFAULT_LAYOUT
    if linker_script is not None:
        lds = tmp_path / f"{name}.lds"
        lds.write_text(linker_script)
        layout = (f"-Wl,-T,{lds}",)
    out = tmp_path / f"{name}.elf"
    cmd = [gcc, *CFLAGS, *sources, *LDFLAGS, *layout, *extra_ldflags, "-o", str(out)]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"gcc failed ({' '.join(cmd)}):\n{proc.stderr}")
    return out


# A tiny freestanding program: a sized function, a size-0 assembly label,
# read-only data, data and bss.
HELLO_C = r"""
const char message[] = "hello from picosim";
int counter = 7;
char buffer[8192];

__attribute__((noinline)) int add(int a, int b) { return a + b + counter; }

__asm__(".text\n.globl bare_label\n.type bare_label, @function\nbare_label:\n"
        "  nop\n  nop\n  ret\n");

void _start(void) {
    buffer[0] = message[0];
    counter = add(counter, 3);
    for (;;) __asm__ volatile("hlt");
}
"""


def build_with_notes(tmp_path: Path, *notes: bytes, c_source: str = HELLO_C,
                     name: str = "notes") -> Path:
    """An image whose PT_NOTE segments each hold one of ``notes`` (in order)."""
    return build_elf(tmp_path, c_source, notes_asm(*notes), linker_script=notes_lds(len(notes)),
                     name=name)
