"""A new user's first look at a small real manual (the bzip2 manual, probe2): what `archivist search`
printed did not name its sources as `archivist ask` does.

- A CSV's passages are headed by the file's name, and search printed it twice ("flags.csv — flags.csv"),
  where ask and the chat page say it once (answer.source_label); a PDF page was "p.10" there and
  "page 10" under an answer.
- Two collections may hold files of one name (a manual and a phone scan of its pages, filed apart):
  search did not say which collection a hit came from, ask does.
"""

from __future__ import annotations


def _hit_lines(out: str) -> list[str]:
    """The numbered hit lines of `archivist search` (not their snippets)."""
    return [line.strip() for line in out.splitlines() if line[:3].strip().rstrip(".").isdigit()]


def test_search_names_its_hits_as_ask_does_with_their_collection(cli, tmp_path):
    for collection, meaning in (("manual", "keep input files during compression"),
                                ("scans", "keep input files when decompressing")):
        folder = tmp_path / collection
        folder.mkdir()
        (folder / "flags.csv").write_text(f"flag,meaning\n-k,{meaning}\n-f,force overwrite of output files\n")
        assert cli("ingest", str(folder / "flags.csv"), "--collection", collection).returncode == 0
    (tmp_path / "notes.md").write_text("# Options\n\n## Keep\n\nThe -k flag keeps input files.\n")
    assert cli("ingest", str(tmp_path / "notes.md"), "--collection", "manual").returncode == 0

    run = cli("search", "keep input files", "-k", "3")
    assert run.returncode == 0, run.stderr
    lines = _hit_lines(run.stdout)
    assert len(lines) == 3, run.stdout
    where = sorted(line.split(".", 1)[1].split("  [score=")[0].strip() for line in lines)
    assert where == ["flags.csv (manual)", "flags.csv (scans)", "notes.md — Options > Keep (manual)"], run.stdout
