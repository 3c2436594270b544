"""The security monitor: manifests, deny by default, sandbox paths, limits."""

from __future__ import annotations

import os

import pytest

from sim.libos.monitor import DEFAULT_MANIFEST, Monitor, Policy, PolicyError, find_policy
from sim.libos.pico_abi import (
    OPEN_CREATE,
    OPEN_READ,
    OPEN_WRITE,
    PICO_ABI,
    PROT_EXEC,
    PROT_READ,
    PROT_WRITE,
)
from sim.libos.pico_streams import Sandbox, StreamError


def test_default_manifest_denies_streams_and_memory():
    pol = Policy.from_toml(DEFAULT_MANIFEST, "default")
    events = []
    mon = Monitor(pol, PICO_ABI, lambda *a, **k: events.append((a, k)))
    assert mon.admit(PICO_ABI.by_name["console_write"], {}) is None
    assert "not in the manifest" in mon.admit(PICO_ABI.by_name["vm_alloc"], {})
    assert mon.admit(PICO_ABI.by_name["stream_open"], {"uri": "file:x"}) is not None
    assert pol.memory == 0 and pol.threads == 1
    assert "surface 1 of" in mon.summary() and "denied 2" in mon.summary()


def test_policy_families_patterns_and_sizes():
    pol = Policy.from_toml('[pico]\ncalls=["family:streams"]\nuris=["file:data/*","chan:kv"]\n'
                           'memory="2MiB"\nfile_bytes=100\n', "t")
    mon = Monitor(pol, PICO_ABI, lambda *a, **k: None)
    assert pol.memory == 2 << 20 and pol.file_bytes == 100
    assert mon.admit(PICO_ABI.by_name["stream_open"], {"uri": "file:data/x"}) is None
    assert mon.admit(PICO_ABI.by_name["stream_open"], {"uri": "file:other"}) is not None
    assert mon.admit(PICO_ABI.by_name["stream_connect"], {"uri": "chan:kv"}) is None
    assert mon.admit(PICO_ABI.by_name["exit"], {}) is not None


@pytest.mark.parametrize("text", ["not toml [", "[other]\n", '[pico]\ncalls="x"\n',
                                  '[pico]\nmemory="lots"\n', '[pico]\nthreads=100000\n',
                                  '[pico]\nbogus=1\n', '[pico]\nmemory=-1\n'])
def test_bad_manifests_are_one_sentence_errors(text):
    with pytest.raises(PolicyError):
        Policy.from_toml(text, "m")


def test_policy_precedence(tmp_path):
    img = tmp_path / "app.elf"
    img.write_bytes(b"")
    note = '[pico]\ncalls=["exit"]\n'
    assert find_policy(img, note).calls == ("exit",)
    (tmp_path / "app.policy.toml").write_text('[pico]\ncalls=["cmdline"]\n')
    assert find_policy(img, note).calls == ("cmdline",)
    over = tmp_path / "over.toml"
    over.write_text('[pico]\ncalls=["*"]\n')
    assert find_policy(img, note, over).calls == ("*",)
    with pytest.raises(PolicyError):
        find_policy(img, None, tmp_path / "missing.toml")


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/../b", "a//b", ".", "", "a/./b",
                                  "a\\b", "x\0y"])
def test_sandbox_refuses_escaping_names(tmp_path, name):
    box = Sandbox(tmp_path / "box")
    with pytest.raises(StreamError):
        box.open(name, OPEN_WRITE | OPEN_CREATE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["box"] or not (tmp_path / "box").exists()


def test_sandbox_never_follows_symlinks(tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    box_dir = tmp_path / "box"
    box_dir.mkdir()
    os.symlink(outside, box_dir / "link")
    os.symlink(tmp_path, box_dir / "up")
    os.link(outside, box_dir / "hard")
    box = Sandbox(box_dir)
    for name in ("link", "up/secret.txt", "hard"):
        with pytest.raises(StreamError) as err:
            box.open(name, OPEN_READ | OPEN_WRITE | OPEN_CREATE)
        assert err.value.error == "EPERM"
    with pytest.raises(StreamError):
        box.delete("link")
    with pytest.raises(StreamError):
        box.delete("up/secret.txt")
    assert outside.read_text() == "secret" and (box_dir / "link").is_symlink()


def test_sandbox_creates_directories_inside(tmp_path):
    box = Sandbox(tmp_path / "box")
    fd = box.open("a/b/c.txt", OPEN_WRITE | OPEN_CREATE)
    os.write(fd, b"x")
    os.close(fd)
    assert (tmp_path / "box" / "a" / "b" / "c.txt").read_bytes() == b"x"
    box.delete("a/b/c.txt")
    assert not (tmp_path / "box" / "a" / "b" / "c.txt").exists()


def test_temporary_sandbox_is_removed():
    box = Sandbox(None)
    root = box.root
    assert root.is_dir()
    box.cleanup()
    assert not root.exists()


def test_prot_constants_match_the_c_library():
    from sim.sdk.build import INCLUDE_DIR

    text = (INCLUDE_DIR / "picolibos.h").read_text()
    from sim.libos import pico_abi

    for name in ("PROT_READ", "PROT_WRITE", "PROT_EXEC", "OPEN_READ", "OPEN_WRITE", "OPEN_CREATE",
                 "OPEN_TRUNCATE", "OPEN_APPEND", "OPEN_NONBLOCK"):
        assert f"#define PL_{name} {getattr(pico_abi, name)}\n" in text
    assert PROT_READ | PROT_WRITE | PROT_EXEC == 7
