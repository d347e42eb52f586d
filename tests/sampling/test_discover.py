"""Folder listing: natural order, hidden files left out, subfolders only when recursive."""

from __future__ import annotations

import os
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


def make_deep_folder(root: Path, depth: int) -> list[Path]:
    """`root/d/d/.../d` `depth` levels deep (1-letter names keep the path under PATH_MAX), made
    level by level (os.makedirs recurses once per level). Returns the folders, outermost first."""
    folders = [root]
    for _ in range(depth):
        folders.append(folders[-1] / "d")
        os.mkdir(folders[-1])
    return folders[1:]


def remove_deep_folder(folders: list[Path]) -> None:
    """Innermost first: shutil.rmtree would recurse once per level too."""
    for folder in reversed(folders):
        for entry in os.scandir(folder):
            if not entry.is_dir(follow_symlinks=False):
                os.unlink(entry.path)
        os.rmdir(folder)


def test_a_folder_2000_levels_deep_is_walked_without_recursion(tmp_path: Path) -> None:
    folders = make_deep_folder(tmp_path, 2000)
    try:
        touch(tmp_path, "top.png")
        (folders[999] / "middle.png").write_bytes(b"x")
        (folders[-1] / "bottom.png").write_bytes(b"x")
        (folders[-1] / ".hidden.png").write_bytes(b"x")
        listed = list_folder_files(tmp_path, recursive=True)
        # Path order, part by part: "d" sorts before "middle.png" and "top.png".
        assert [p.name for p in listed] == ["bottom.png", "middle.png", "top.png"]
        assert listed[0] == folders[-1] / "bottom.png"
    finally:
        remove_deep_folder(folders)


def test_symlinked_folders_are_not_followed(tmp_path: Path) -> None:
    touch(tmp_path, "a/1.jpg", "b/2.jpg")
    (tmp_path / "a" / "loop").symlink_to(tmp_path)  # a link back up: following it would never end
    (tmp_path / "b" / "also_a").symlink_to(tmp_path / "a")
    (tmp_path / "b" / "link.jpg").symlink_to(tmp_path / "a" / "1.jpg")  # a link to a file is a file
    listed = [p.relative_to(tmp_path).as_posix() for p in list_folder_files(tmp_path, recursive=True)]
    assert listed == ["a/1.jpg", "b/2.jpg", "b/link.jpg"]
