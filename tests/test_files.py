"""archivist/files.py: folders and files written so that a power cut leaves the old or the new whole.

A power cut cannot be staged in a test; what can be checked is the order the module promises:
every byte of a folder is fsynced while the folder does not yet exist under its name, and the
parent folder after the rename (the real os.fsync runs; the test notes each call)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from archivist import files


@pytest.fixture
def synced(monkeypatch):
    """[(path fsynced, whether the watched target existed then)], the real fsync running."""
    calls, real, watch = [], os.fsync, {}

    def fsync(fd):
        calls.append((os.readlink(f"/proc/self/fd/{fd}"), watch["target"].exists() if "target" in watch else None))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls, watch


def test_a_published_folder_is_on_disk_before_it_has_its_name(tmp_path, synced):
    calls, watch = synced
    tmp, target = tmp_path / ".adapter.tmp", tmp_path / "adapter"
    (tmp / "sub").mkdir(parents=True)
    (tmp / "weights.bin").write_bytes(b"\x01" * 1000)
    (tmp / "sub" / "config.json").write_text("{}")
    watch["target"] = target
    files.publish(tmp, target)
    assert (target / "sub" / "config.json").read_text() == "{}" and not tmp.exists()
    before = {Path(p).name for p, existed in calls if existed is False}
    assert {"weights.bin", "config.json", "sub", ".adapter.tmp"} <= before  # files and folders, before the rename
    assert (str(tmp_path), True) in calls  # the parent's entry for the new name, after it


def test_publish_replaces_an_existing_folder_only_when_asked(tmp_path):
    target = tmp_path / "model"
    (target).mkdir()
    (target / "old.txt").write_text("old")
    for n in (1, 2):
        tmp = tmp_path / f".model.tmp{n}"
        tmp.mkdir()
        (tmp / "new.txt").write_text(f"new {n}")
        if n == 1:
            with pytest.raises(OSError):  # a folder that is there already is not replaced silently
                files.publish(tmp, target)
            assert (target / "old.txt").read_text() == "old"
        else:
            files.publish(tmp, target, replace_existing=True)
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"] and (target / "new.txt").read_text() == "new 2"


def test_a_replaced_file_is_synced_before_the_rename_and_leaves_no_temporary(tmp_path, synced):
    calls, watch = synced
    path = tmp_path / "embedder.json"
    path.write_text('{"generation": "a"}')
    files.replace(path, '{"generation": "b"}')
    assert path.read_text() == '{"generation": "b"}' and [p.name for p in tmp_path.iterdir()] == ["embedder.json"]
    assert [re.sub(r"\.\d+-[0-9a-f]+\.tmp$", ".tmp", Path(p).name) for p, _ in calls] == [".embedder.json.tmp", tmp_path.name]  # the bytes (this writer's own file beside it), then the folder
