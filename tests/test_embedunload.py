"""A deleted or replaced adapted embedder leaves the process's model cache (archivist.models
`drop_stale_embedders`): a long-lived process (`archivist serve`, the app) kept every deleted
embedder's weights in memory until it exited, and one registered again under its name beside them.
The real small embedder (MiniLM, torch backend), saved perturbed as test_retrdel does."""

from __future__ import annotations

import gc
import shutil
import weakref

import numpy as np
from test_retrdel import QUERY, save_perturbed, tiny_ws  # noqa: F401 (tiny_ws: a fixture)


def held_for(folder) -> list[tuple]:
    from archivist.models import loaded_models

    return [k for k in loaded_models("embedder") if k[1] == str(folder)]


def load(ws, folder):
    from archivist.models import load_embedder

    s = ws.settings
    return load_embedder(str(folder), s.device, "torch", str(s.cache))


def test_a_deleted_embedder_leaves_the_deleting_process_and_its_name_registered_again_is_held_once(tiny_ws):
    from archivist.finetune import embedders

    ws = tiny_ws
    folder = embedders.folder(ws, "tuned")
    first = save_perturbed(ws, "tuned", seed=1)
    old = load(ws, folder)
    assert np.allclose(old.embed([QUERY])[0], first, atol=1e-5) and len(held_for(folder)) == 1
    gone = weakref.ref(old)
    del old

    embedders.delete(ws, "tuned")
    assert held_for(folder) == []
    gc.collect()
    assert gone() is None  # nothing else kept it: its weights are freed

    second = save_perturbed(ws, "tuned", seed=2)
    assert np.allclose(load(ws, folder).embed([QUERY])[0], second, atol=1e-5)
    assert len(held_for(folder)) == 1


def test_an_embedder_replaced_by_another_process_is_dropped_at_the_next_load(tiny_ws):
    """Another process (the CLI) deleted it and registered the name again: this one's cache drops
    the old weights when it next loads an embedder, the new ones of that folder or any other."""
    from archivist.finetune import embedders

    ws = tiny_ws
    folder = embedders.folder(ws, "tuned")
    first = save_perturbed(ws, "tuned", seed=1)
    assert np.allclose(load(ws, folder).embed([QUERY])[0], first, atol=1e-5)
    shutil.rmtree(folder)  # what the other process's delete left on disk
    second = save_perturbed(ws, "tuned", seed=2)
    assert np.allclose(load(ws, folder).embed([QUERY])[0], second, atol=1e-5)
    assert len(held_for(folder)) == 1

    shutil.rmtree(folder)  # deleted by the other process: the base embedder's next load drops it
    base = load(ws, ws.settings.embedder)
    # the base embedder is held (other tests of this process may hold it under other devices or backends too)
    assert held_for(folder) == [] and held_for(ws.settings.embedder)
    assert base.embed([QUERY]).shape == (1, 384)
