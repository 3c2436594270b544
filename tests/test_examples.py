"""The bundled examples: the table, the prebuilt images, reproducible builds."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sim.examples import (
    EXAMPLES,
    GCC_VERSION_FILE,
    PREBUILT,
    build,
    prebuilt_path,
    rebuild,
    resolve,
)
from sim.image import Image
from sim.sdk.build import TARGETS

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")


def test_table_rows_are_complete():
    for name, ex in EXAMPLES.items():
        assert ex.path.is_file(), name
        assert ex.target in TARGETS, name
        assert ex.description and "\n" not in ex.description


def test_resolve_names_and_paths(tmp_path):
    assert resolve("hello") == PREBUILT / "hello.elf"
    assert resolve(str(tmp_path / "mine.elf")) == tmp_path / "mine.elf"
    assert resolve(tmp_path / "hello") == tmp_path / "hello"  # a Path is always a path
    assert resolve("not-an-example") == Path("not-an-example")


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_prebuilt_image_is_valid(name):
    img = Image.load(resolve(name))
    assert img.abi == EXAMPLES[name].target
    assert img.entry == img.symbol_address("_start")
    for sym in ("main", "_end", "sdk_start", "__stack_chk_fail"):
        img.symbol_address(sym)
    loaded = [s for s in img.segments if s.memsz]
    assert loaded and not any(s.writable and s.executable for s in loaded)
    assert any(s.executable and not s.writable for s in loaded)


@needs_gcc
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_fresh_build_matches_prebuilt(name, tmp_path):
    """Builds are reproducible: with the gcc that made the prebuilt images, a
    fresh build is the same bytes. (With another gcc the boot tests compare
    behaviour instead: tests/test_examples_boot.py.)"""
    fresh = build(name, tmp_path / f"{name}.elf")
    img = Image.load(fresh)
    assert img.entry == img.symbol_address("_start")
    from sim.sdk.build import gcc_version

    recorded = (PREBUILT / GCC_VERSION_FILE).read_text().strip()
    if gcc_version() != recorded:
        pytest.skip(f"prebuilt images come from {recorded!r}, this machine has {gcc_version()!r}")
    assert fresh.read_bytes() == prebuilt_path(name).read_bytes(), (
        f"{name}: the prebuilt image is stale; run `python -m sim.examples --rebuild`")


@needs_gcc
def test_rebuild_into_a_directory(tmp_path):
    built = rebuild(tmp_path)
    assert set(built) == set(EXAMPLES)
    assert all(p.parent == tmp_path and p.is_file() for p in built.values())
    assert (tmp_path / GCC_VERSION_FILE).read_text().startswith("gcc")
