from pathlib import Path

import pytest

from qslaw.fsutil import atomic_dir, file_hashes


def test_atomic_dir_replaces_an_existing_output_as_a_whole(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with atomic_dir(out) as tmp:
        assert tmp != out and tmp.parent == tmp_path
        (tmp / "new.txt").write_text("new")
        assert (out / "old.txt").exists()  # readers still see the complete old output
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert [p.name for p in out.iterdir()] == ["new.txt"]


def test_atomic_dir_keeps_the_old_output_when_the_block_fails(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_dir(out) as tmp:
        (tmp / "half.txt").write_text("half")
        raise RuntimeError("boom")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert (out / "old.txt").read_text() == "old"


def test_atomic_dir_creates_missing_parents(tmp_path: Path) -> None:
    with atomic_dir(tmp_path / "a" / "b") as tmp:
        (tmp / "x").write_text("x")
    assert (tmp_path / "a" / "b" / "x").read_text() == "x"


def test_file_hashes_are_relative_sorted_and_content_sensitive(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.txt").write_text("b")
    (tmp_path / "sub" / "a.txt").write_text("a")
    first = file_hashes(tmp_path)
    assert list(first) == ["b.txt", "sub/a.txt"]
    (tmp_path / "b.txt").write_text("B")
    assert file_hashes(tmp_path)["b.txt"] != first["b.txt"]
