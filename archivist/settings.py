"""One dataclass of settings with working defaults.

Every field can be overridden by an environment variable `ARCHIVIST_<FIELD>` (upper case)
and by the CLI, which calls `Settings.from_env(**overrides)`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path


def _f(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass
class Settings:
    home: Path = _f(Path("archivist-data"), "workspace folder: SQLite, FAISS, adapters, runs, uploads")
    cache: Path = _f(Path("~/.cache/archivist"), "model cache shared by all workspaces")
    llm: str = _f("smollm2-135m", "chat model: a catalog name, a Hugging Face id or a local path")
    embedder: str = _f("all-minilm-l6-v2", "sentence embedder: a catalog name, HF id or local path")
    embed_backend: str = _f("onnx-int8", "embedder backend on CPU: torch | int8 | onnx | onnx-int8 (ONNX Runtime, int8 "
                                         "weights: about 2-3x torch with the same hit@5; bench/RESULTS.md)")
    embed_batch: int = _f(32, "chunks per embedding batch")
    chunk_tokens: int = _f(256, "chunk size in embedder tokens, at most what the embedder reads (its "
                                  "max_seq_length; more is refused at ingest: models.check_chunk_tokens)")
    chunk_overlap: int = _f(32, "overlap between consecutive chunks of one section, in tokens")
    ann_threshold: int = _f(20000, "vectors in a collection past which an IVF index replaces exact search")
    compress_above: int = _f(100000, "vectors in a collection past which its index is compressed (IVF-PQ, "
                                     "re-scored with the exact vectors; bench/RESULTS.md, finding 16)")
    max_file_mb: int = _f(200, "largest file accepted for ingestion, in MB")
    max_json_mb: int = _f(16, "largest JSON request body the API accepts, in MB (an upload's body: max_file_mb)")
    max_unzipped_mb: int = _f(500, "largest uncompressed size of a DOCX/XLSX/PPTX, in MB")
    reader_timeout: float = _f(120.0, "seconds a single file may take to read before it is failed")
    ocr: str = _f("auto", "OCR for scans and images: auto (pages without a usable text layer, and image files) "
                          "| always (every PDF page too) | never")
    ocr_page_timeout: float = _f(60.0, "seconds one page may take to OCR before the file is failed")
    max_pages: int = _f(2000, "most pages (PDF pages, TIFF frames) a file may have")
    ray_embed: str = _f("auto", "where `ingest --ray` embeds: auto (in the driver when the cluster is this machine "
                                "alone with at most one GPU: an actor there is a second copy of the model on the same "
                                "cores; else on embed actors) | actors (always on embed actors)")
    ray_keep_warm: float = _f(600.0, "seconds the embed actors of `ingest --ray ADDRESS` stay loaded on a running Ray "
                                     "cluster for the next ingest once idle (0: they end with each ingest)")
    top_k: int = _f(5, "passages given to the model per question")
    candidates: int = _f(30, "candidates taken from each of the dense and lexical searches before fusion")
    fusion: str = _f("linear", "how hybrid search fuses dense and lexical: linear (cosine and BM25 scaled by "
                               "fusion_norm, weighted by lexical_weight) | rrf (reciprocal rank fusion); bench/RESULTS.md")
    fusion_norm: str = _f("max", "linear fusion divides BM25 by: max (the query's best BM25 found) | ceiling (the score "
                                 "a chunk holding every query word could reach); chosen on the public tuning splits, "
                                 "bench/RESULTS.md finding 19")
    lexical_weight: float = _f(0.2, "share of BM25 in linear fusion (0 = dense only, 1 = lexical only)")
    lexical_heading_weight: float = _f(0.5, "BM25F weight of a chunk's heading path (text 1; 0.5 is FTS5's bm25 as before)")
    lexical_title_weight: float = _f(0.0, "BM25F weight of the document title (0: not indexed); bench/RESULTS.md, lexical fields")
    lexical_identifier_weight: float = _f(0.0, "extra BM25 frequency for a query identifier (os.path.join) found as written (0: off)")
    max_new_tokens: int = _f(200, "most tokens generated per answer")
    min_relevance: float = _f(0.62, "answerability (best cosine + half the question-term coverage) under which the answer is 'not in the documents'")
    weak_support: float = _f(0.45, "citation support under which a citation is flagged weak")
    quote_answered: float = _f(0.9, "a verified generated answer, or a quote, whose sentence scores at least this as an "
                                    "answer to the question (retrieval/quote.py) is shown as answered (tuning splits: "
                                    "bench/tune_quote.py --fit)")
    key_answered: float = _f(0.7635, "a quote whose probability of holding the answer (retrieval/keyanswer.py) is at least "
                                  "this is shown as answered (chosen on the tuning splits, held on each corpus: bench/tune_quote.py --fit)")
    key_not_found: float = _f(0.1189, "a question whose probability of being answered by the documents (retrieval/keyanswer.py) "
                                   "is under this gets not found (chosen on the tuning splits, held on each corpus: bench/tune_quote.py --fit)")
    key_answered_read: float = _f(0.8343, "key_answered when the chat model also read the quote's candidates (auto mode, "
                                       "read_quotes; bench/tune_quote.py --fit --reader)")
    key_not_found_read: float = _f(0.0554, "key_not_found when the chat model also read the candidates (bench/tune_quote.py --fit --reader)")
    read_quotes: bool = _f(True, "auto mode: the chat model (in this process, or a vLLM server's prompt log-probabilities) reads "
                                 "the quote's best candidates (retrieval/keyanswer.py reading; 1.3-1.7 s a question on a "
                                 "2-core CPU); extractive mode does without it")
    answer_mode: str = _f("auto", "auto (generate; quote the passages when the answer is unsupported) | generate | extractive")
    llm_url: str = _f("", "an OpenAI-compatible server (vLLM, SGLang, llama.cpp, TGI) serving the chat model, e.g. "
                          "http://127.0.0.1:8000; empty: the model runs in this process (docs/serving.md)")
    llm_fallback: str = _f("none", "when the llm_url server is down: none (a clear error) | local (the in-process model)")
    llm_parallel: int = _f(64, "generations one API process sends the llm_url server at once (in-process: 1)")
    max_queued_per_user: int = _f(0, "generations one user (all their keys, the admin too) may have running or waiting "
                                     "in one API process; past it they get 429 user_queue_full while others still get "
                                     "places (0: half the places, llm_parallel or 1 running + --max-waiting, at least 1)")
    cors_origins: str = _f("", "web origins whose pages may call the API from a browser, comma-separated "
                               "(https://tools.example.com,http://localhost:3000); empty: none (CORS off); never *")
    device: str = _f("auto", "auto | cpu | cuda")
    quantize: str = _f("auto", "LLM weights at inference: auto (4-bit on GPU) | none | 4bit")
    user: str = _f("", "act as this user (default: the local admin)")
    collection: str = _f("default", "default collection for ingestion")
    audit_days: float = _f(0.0, "keep audit records this many days, then purge them behind a checkpoint (0: keep all)")
    stale_adapters: str = _f("allow", "adapters trained on a since-erased document: allow (listed as stale) | block "
                                      "(they answer no question until retrained)")

    def __post_init__(self):
        self.home = Path(self.home).expanduser()
        self.cache = Path(self.cache).expanduser()
        if self.chunk_tokens < 16:
            raise ValueError(f"chunk_tokens must be at least 16, got {self.chunk_tokens}")
        if not 0 <= self.chunk_overlap < self.chunk_tokens // 2:
            raise ValueError(f"chunk_overlap must be in [0, chunk_tokens/2), got {self.chunk_overlap}")
        if self.embed_backend not in ("torch", "int8", "onnx", "onnx-int8"):
            raise ValueError(f"embed_backend must be torch, int8, onnx or onnx-int8, got {self.embed_backend!r}")
        if self.fusion not in ("linear", "rrf"):
            raise ValueError(f"fusion must be linear or rrf, got {self.fusion!r}")
        if self.fusion_norm not in ("max", "ceiling"):
            raise ValueError(f"fusion_norm must be max or ceiling, got {self.fusion_norm!r}")
        for name in ("lexical_heading_weight", "lexical_title_weight", "lexical_identifier_weight"):
            if not 0.0 <= getattr(self, name) < float("inf"):
                raise ValueError(f"{name} must be a finite number >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.lexical_weight <= 1.0:
            raise ValueError(f"lexical_weight must be in [0, 1], got {self.lexical_weight}")
        if self.answer_mode not in ("auto", "generate", "extractive"):
            raise ValueError(f"answer_mode must be auto, generate or extractive, got {self.answer_mode!r}")
        if self.compress_above < 1:
            raise ValueError(f"compress_above must be at least 1, got {self.compress_above}")
        if self.max_json_mb < 1:
            raise ValueError(f"max_json_mb must be at least 1, got {self.max_json_mb}")
        # sizes and counts a service's environment may set: 0 or less refused every file or found nothing, silently
        for name in ("max_file_mb", "max_unzipped_mb", "max_pages", "top_k", "candidates", "embed_batch", "max_new_tokens",
                     "ann_threshold"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("reader_timeout", "ocr_page_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be more than 0 seconds, got {getattr(self, name)}")
        for origin in self.cors_origin_list:  # an origin is scheme://host[:port], nothing after it
            if origin == "*" or "*" in origin:
                raise ValueError("cors_origins must list each origin, not '*': any web page could then use a key a "
                                 "browser holds")
            scheme, sep, rest = origin.partition("://")
            if scheme not in ("http", "https") or not sep or not rest or "/" in rest:
                raise ValueError(f"cors_origins: {origin!r} is not an origin like https://tools.example.com "
                                 "(scheme and host, optional :port, no path)")
        if self.ocr not in ("auto", "always", "never"):
            raise ValueError(f"ocr must be auto, always or never, got {self.ocr!r}")
        if self.llm_fallback not in ("none", "local"):
            raise ValueError(f"llm_fallback must be none or local, got {self.llm_fallback!r}")
        if self.llm_parallel < 1:
            raise ValueError(f"llm_parallel must be at least 1, got {self.llm_parallel}")
        if self.max_queued_per_user < 0:
            raise ValueError(f"max_queued_per_user must be 0 (half the queue) or more, got {self.max_queued_per_user}")
        if self.llm_url and not self.llm_url.startswith(("http://", "https://")):
            raise ValueError(f"llm_url must be an http:// or https:// URL, got {self.llm_url!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.ray_embed not in ("auto", "actors"):
            raise ValueError(f"ray_embed must be auto or actors, got {self.ray_embed!r}")
        if self.ray_keep_warm < 0:
            raise ValueError(f"ray_keep_warm must be 0 or more seconds, got {self.ray_keep_warm}")
        if self.audit_days < 0:
            raise ValueError(f"audit_days must be 0 or more, got {self.audit_days}")
        if self.stale_adapters not in ("allow", "block"):
            raise ValueError(f"stale_adapters must be allow or block, got {self.stale_adapters!r}")
        if self.quantize not in ("auto", "none", "4bit"):
            raise ValueError(f"quantize must be auto, none or 4bit, got {self.quantize!r}")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides) -> "Settings":
        """Defaults, then ARCHIVIST_* variables (an empty one counts as unset), then explicit overrides (None
        means unset). Raises ValueError naming the variable for a value that is not its type, or for one
        of _NEVER_EMPTY set empty."""
        env = os.environ if env is None else env
        for name, default in _NEVER_EMPTY.items():
            raw = env.get(f"ARCHIVIST_{name.upper()}")
            if overrides.get(name) is None and raw is not None and not raw.strip():
                raise ValueError(f"ARCHIVIST_{name.upper()} is set but empty (an unset variable in a script or a "
                                 f"service file?); name it, or unset it for {default}")
        values = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f"ARCHIVIST_{f.name.upper()}")
            if raw is not None and raw != "":
                values[f.name] = _coerce(f, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def cors_origin_list(self) -> list[str]:
        """The origins of cors_origins, each as a browser sends it (no trailing slash)."""
        return [o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip()]

    def describe(self) -> dict:
        return {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(self).items()}


# Variables that may not be set empty: unlike the others, their default is no safe reading of an unset
# `$VAR` in a script or service file. `ARCHIVIST_HOME="$DIR"` had opened ./archivist-data wherever the
# command ran, and `ARCHIVIST_USER="$U"` acted as the local admin, who reads every collection.
_NEVER_EMPTY = {"home": "the default ./archivist-data", "user": "the local admin"}

_BOOL = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def _bool(raw: str) -> bool:
    if raw.strip().lower() not in _BOOL:
        raise ValueError(f"not one of {', '.join(_BOOL)}")
    return _BOOL[raw.strip().lower()]


def _coerce(f: dataclasses.Field, raw: str):
    kind = f.type if isinstance(f.type, type) else {"int": int, "float": float, "Path": Path}.get(str(f.type), str)
    if f.type in (bool, "bool"):
        kind = _bool
    try:
        return kind(raw)
    except ValueError as e:
        raise ValueError(f"ARCHIVIST_{f.name.upper()}={raw!r}: {e}") from None


def python_module(module: str) -> list[str]:
    """The start of the command line that runs `python -m MODULE` in a child process (the readers'
    sandbox, a PDF page drawn apart, a background run), this interpreter's, with no import from the
    current folder. `python -m` puts the current folder first on the import path: run from a folder
    others may write into (`cd share && archivist ingest .`), a `csv.py` there ran as the child,
    with the workspace's rights. `-P` (Python 3.11+) leaves that folder out; 3.10 has no `-P`, and
    `-I` (which also ignores PYTHONPATH and the user's site-packages) does the same."""
    import sys

    return [sys.executable, "-P" if sys.version_info >= (3, 11) else "-I", "-m", module]
