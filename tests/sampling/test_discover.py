"""Folder listing: natural order, hidden files left out, subfolders only when recursive."""

from __future__ import annotations

from pathlib import Path

from sampling.discover import list_folder_files, natural_key


def touch(folder: Path, *names: str) -> None:
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def test_natural_order_is_case_insensitive_and_numeric(tmp_path: Path) -> None:
    touch(tmp_path, "img10.png", "img2.png", "IMG1.png", "a.png", "img2b.png", ".DS_Store")
    names = [p.name for p in list_folder_files(tmp_path)]
    assert names == ["a.png", "IMG1.png", "img2.png", "img2b.png", "img10.png"]


def test_recursive_keeps_subfolders_together(tmp_path: Path) -> None:
    touch(tmp_path, "b/2.jpg", "b/10.jpg", "a/1.jpg", "top.jpg", ".hidden/x.jpg")
    assert [p.name for p in list_folder_files(tmp_path)] == ["top.jpg"]
    listed = [p.relative_to(tmp_path).as_posix() for p in list_folder_files(tmp_path, recursive=True)]
    assert listed == ["a/1.jpg", "b/2.jpg", "b/10.jpg", "top.jpg"]


def test_natural_key_never_compares_numbers_with_text() -> None:
    names = ["1a", "a1", "10", "a", "2", "a01", "b"]
    assert sorted(names, key=lambda n: natural_key(Path(n))) == ["1a", "2", "10", "a", "a1", "a01", "b"]
