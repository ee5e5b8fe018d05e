"""The lead's own mends of this stop, each a defect left open by the last one.

1. `archivist jobs --files show ID` dropped `--files`: the action's own flag (default False)
   overwrote the one given before it, as `--json` did until test_smallmend.
"""

from __future__ import annotations

import pytest

from archivist.ingest.pipeline import create_job


@pytest.mark.parametrize("where", ["before", "after"])
def test_jobs_show_lists_files_wherever_files_is_given(ws, tmp_path, cli, where):
    notes = []
    for name in ("canteen.md", "parking.md"):
        (tmp_path / name).write_text(f"# {name}\n\nOpen at 8.\n")
        notes.append((tmp_path / name, name))
    job = create_job(ws, "ingest", "admin", "team", notes)
    args = ("jobs", "--files", "show", job.id) if where == "before" else ("jobs", "show", job.id, "--files")
    r = cli(*args)
    assert (r.returncode, r.stderr) == (0, ""), r
    assert "canteen.md" in r.stdout and "parking.md" in r.stdout, r.stdout
    assert "lists them" not in r.stdout
    plain = cli("jobs", "show", job.id).stdout  # no --files: the counts and the hint, no names
    assert "canteen.md" not in plain and "--files` lists them" in plain, plain
