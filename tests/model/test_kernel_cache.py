"""Compiled code loads only from a directory only this user can write (model/kernel_cache.py).

The attack: a file named like our kernel library, planted in a cache folder another user can write,
must never be loaded. The planted library here has a constructor that writes a marker file when it
is loaded, so the tests see whether it ran."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from model.kernel_cache import is_trusted_file, untrusted_reason

ROOT = os.geteuid() == 0
OTHER_UID = 65534  # "nobody"
needs_root = pytest.mark.skipif(not ROOT, reason="changing a file's owner needs root")


def _private(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def test_a_private_directory_is_trusted(tmp_path):
    folder = _private(tmp_path / "cache")
    assert untrusted_reason(folder) is None


@pytest.mark.parametrize("mode", [0o777, 0o703, 0o722])
def test_a_directory_others_can_write_is_not(tmp_path, mode):
    folder = _private(tmp_path / "cache")
    folder.chmod(mode)
    assert "writable by other users" in untrusted_reason(folder)


def test_a_symlinked_directory_is_not(tmp_path):
    target = _private(tmp_path / "real")
    link = tmp_path / "link"
    link.symlink_to(target)
    assert "not a real directory" in untrusted_reason(link)


def test_an_ancestor_others_can_write_makes_it_untrusted_unless_sticky(tmp_path):
    shared = tmp_path / "shared"
    folder = _private(shared / "cache")
    shared.chmod(0o777)  # another user could rename `cache` away and put their own in its place
    assert "shared is writable by other users" in untrusted_reason(folder)
    shared.chmod(0o1777)  # like /tmp: others cannot rename or replace our entries
    assert untrusted_reason(folder) is None


@needs_root
def test_a_directory_of_another_user_is_not(tmp_path):
    folder = _private(tmp_path / "cache")
    os.chown(folder, OTHER_UID, -1)
    assert "belongs to another user" in untrusted_reason(folder)


@needs_root
def test_group_write_counts_when_the_group_is_shared(tmp_path):
    folder = _private(tmp_path / "cache")
    folder.chmod(0o770)
    os.chown(folder, -1, OTHER_UID)  # not the user's own group
    assert "writable by other users" in untrusted_reason(folder)


def test_library_files_must_be_plain_and_unwritable_by_others(tmp_path):
    library = tmp_path / "lib.so"
    library.write_bytes(b"\x7fELF")
    library.chmod(0o755)
    assert is_trusted_file(library)
    library.chmod(0o757)
    assert not is_trusted_file(library)
    link = tmp_path / "link.so"
    link.symlink_to(library)
    assert not is_trusted_file(link)


# --- the whole path, in a fresh process ------------------------------------------------------

_PLANTED = r"""
#include <stdio.h>
__attribute__((constructor)) static void planted(void) {
    FILE *f = fopen(MARKER, "w");
    if (f) { fputs("planted code ran", f); fclose(f); }
}
"""

_NAMES = (
    "import json\n"
    "import model.cpu_kernels as k\n"
    "compiler = k._find_compiler()\n"
    "print(json.dumps({'targets': [k._target(compiler, flags).name for flags in k.COMPILE_FLAGS]}))\n"
)
_STATUS = (
    "import json\n"
    "import model.cpu_kernels as k\n"
    "from model.kernel_cache import kernel_cache_dir, untrusted_reason\n"
    "status, where = k.kernels_status(), kernel_cache_dir()\n"
    "print(json.dumps({'status': status, 'dir': str(where), 'why': untrusted_reason(where)}))\n"
)


def _run(code: str, cache_home: Path) -> dict:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache_home)}
    env.pop("LONGLLAVA_CPU_KERNELS", None)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return {**json.loads(result.stdout.splitlines()[-1]), "stderr": result.stderr}


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler")
def test_a_library_planted_in_a_shared_cache_is_never_loaded(tmp_path):
    """The cache folder is world-writable: every library name we would load there holds planted
    code. The kernels are built in a private temporary folder instead, and the planted code never
    runs."""
    home = tmp_path / "home"
    cache = home / "longllava" / "kernels"
    cache.mkdir(parents=True)
    cache.chmod(0o777)
    names = _run(_NAMES, tmp_path / "probe-home")["targets"]  # the names, computed in a private cache
    marker = tmp_path / "planted-marker"
    source = tmp_path / "planted.c"
    source.write_text(_PLANTED)
    for name in names:
        compiler = shutil.which("cc") or shutil.which("gcc")
        subprocess.run(
            [compiler, "-shared", "-fPIC", f'-DMARKER="{marker}"', "-o", str(cache / name), str(source)], check=True
        )
        (cache / name).chmod(0o755)
    run = _run(_STATUS, home)
    assert not marker.exists(), "a library from a folder others can write was loaded"
    available, detail = run["status"]
    used_dir = Path(run["dir"])
    assert not used_dir.is_relative_to(home) and run["why"] is None  # private, checked while it existed
    if available:
        assert Path(detail).parent == used_dir
    assert "not using the kernel cache" in run["stderr"] and "writable by other users" in run["stderr"]
    assert not used_dir.exists(), "the private temporary folder is removed at exit"
