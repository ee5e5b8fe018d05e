"""Repeated pieces given one home, where that changed what a user sees.

1. An empty or blank collection name was refused in three wordings: the CLI's -c ("a collection name
   is empty ('')…leave -c out"), the API's search and listing fields ("collection: a collection name
   is empty: …leave the field out") and the upload form ("form field 'collection' is empty: …"). One
   rule, now one sentence (`access.blank_collection`) that names the value and where it was given.
2. A deleted reranker's or embedder's folder was renamed to a hidden name written out by hand in each;
   `files.set_aside` is its one home. Its folder must be found by `remove_abandoned_folders` when a
   kill leaves it (it holds no lock), and a live save's must not.
"""

from __future__ import annotations

import argparse

import pytest
from conftest import members_with_keys

from archivist import files
from archivist.cli import collection_arg


def refused(blank: str, where: str) -> str:
    return f"a collection name is empty ({blank!r}): name a collection or leave {where} out"


@pytest.fixture
def api(ws):
    from starlette.testclient import TestClient

    from archivist.api.app import create_app

    auth = {"Authorization": f"Bearer {members_with_keys(ws, {})['admin']}"}
    with TestClient(create_app(ws.settings), raise_server_exceptions=False) as client:
        yield client, auth


def test_a_blank_collection_is_refused_in_one_wording_by_the_cli_and_every_api_field(api):
    client, auth = api
    with pytest.raises(argparse.ArgumentTypeError) as cli_error:
        collection_arg(" ")
    assert str(cli_error.value) == refused(" ", "-c")

    search = client.post("/v1/search", json={"query": "badge", "collections": ["hr", ""]}, headers=auth)
    assert search.status_code == 422, search.text
    assert search.json()["error"]["message"] == refused("", "the field 'collections'")

    listing = client.get("/v1/documents", params={"collection": "  "}, headers=auth)
    assert listing.status_code == 422, listing.text
    assert listing.json()["error"]["message"] == refused("  ", "the field 'collection'")

    upload = client.post("/v1/documents", files={"file": ("note.txt", b"The badge is valid for one day.\n")},
                         data={"collection": ""}, headers=auth)
    assert upload.status_code == 422, upload.text
    assert upload.json()["error"]["message"] == refused("", "the form field 'collection'")
    assert client.get("/v1/documents", headers=auth).json()["data"] == []


def test_a_folder_set_aside_frees_its_name_and_a_killed_deletes_folder_is_removed_not_a_live_saves(tmp_path):
    root = tmp_path / "embedders"
    (root / "board" / "weights").mkdir(parents=True)
    (root / "board" / "weights" / "model.safetensors").write_bytes(b"what it learned")

    gone = files.set_aside(root / "board")
    assert not (root / "board").exists()
    assert gone.parent == root and gone.name.startswith(".board.") and gone.name.endswith(".tmp")
    assert (gone / "weights" / "model.safetensors").read_bytes() == b"what it learned"

    with files.building(root, "other") as saving:  # a live save beside it, locked
        files.remove_abandoned_folders(root)  # as the next save does after a delete killed before its rmtree
        assert not gone.exists()
        assert saving.is_dir()
    assert sorted(p.name for p in root.iterdir()) == []
