"""Presentation only: the numbers the evaluation and fine-tuning stages leave behind, as rows and
series for the pages to chart. Nothing here reads a table: stored evaluations come from
archivist.retrieval.evaluation.list_evaluations (which takes the user), adapters from the registry.

An evaluation's results are the JSON `archivist eval` stored; this module does not assume their
exact shape: every numeric leaf becomes a metric named by its key path ("recall@5",
"answers.exact_match"), and the longest list of objects becomes the per-item table.
"""

from __future__ import annotations

import math

COUNTS = ("questions", "answerable", "unanswerable", "citations", "k", "n", "limit")  # sizes, not scores
MODE_ORDER = ("hybrid+rerank", "hybrid", "dense", "lexical")  # the headline mode: the best the run measured
ITEM_KEYS = ("per_query", "per_question", "queries", "questions", "items", "rows", "examples", "details")


def flatten_metrics(results: dict, prefix: str = "") -> dict[str, float]:
    """Every finite number in a nested dict, keyed by its dotted path; a top-level "metrics" dict is unwrapped."""
    if not prefix and isinstance(results.get("metrics"), dict):
        inner = flatten_metrics(results["metrics"], "")
        rest = flatten_metrics({k: v for k, v in results.items() if k != "metrics"}, "")
        return {**inner, **{k: v for k, v in rest.items() if k not in inner}}
    out: dict[str, float] = {}
    for key, value in results.items():
        name = f"{prefix}{key}"
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)) and math.isfinite(value):
            out[name] = float(value)
        elif isinstance(value, dict):
            out.update(flatten_metrics(value, f"{name}."))
    return out


def mode_table(results: dict) -> dict[str, dict[str, float]]:
    """A retrieval run's {mode: {metric: value}} (`archivist eval retrieval` stores "modes"), else {}."""
    modes = results.get("modes")
    if not isinstance(modes, dict):
        return {}
    return {m: flatten_metrics(v) for m, v in modes.items() if isinstance(v, dict)}


def headline(results: dict) -> tuple[str | None, dict[str, float]]:
    """(mode, scores) to show first: for retrieval the best mode measured, else every top-level score.
    Counts (questions, k …) and timings are left out; they are not quality."""
    modes = mode_table(results)
    if modes:
        mode = next((m for m in MODE_ORDER if m in modes), next(iter(modes)))
        return mode, {k: v for k, v in modes[mode].items() if not k.startswith("latency")}
    flat = flatten_metrics(results)
    # an answers run's intervals and comparison with an earlier run (`eval answers --compare`) are not scores of its own
    return None, {k: v for k, v in flat.items() if k.split(".")[-1] not in COUNTS and "seconds" not in k
                  and not k.startswith(("modes.", "intervals.", "comparison."))}


HIDDEN_MODEL = "not shown (the run drew on a collection you can no longer read)"


def answered_by(results: dict) -> str | None:
    """Who wrote an answers run's answers: "base model" or "adapter NAME" (`archivist eval answers` stores
    the adapter's name, None for the base), with the answer mode unless auto, or extractive mode (passages
    quoted, whatever the adapter); None when the run does not say (stored before it did, when "active"
    meant whichever adapter was active then); HIDDEN_MODEL for a withheld run. Runs by different models
    are not one model's change."""
    mode = results.get("mode")
    if mode == "extractive":  # passages quoted, no model wrote: the adapter named does not matter
        return "extractive mode (passages quoted, no model)"
    if results.get("withheld"):
        # as the chat hides an adapter trained on a collection the reader lost (conversations.messages);
        # "base model" shown for the others would single out the runs such an adapter answered
        return HIDDEN_MODEL
    adapter = results.get("adapter", "active")
    if adapter == "active":
        return None
    who = "base model" if adapter is None else f"adapter {adapter}"
    return who if mode in (None, "auto") else f"{who} in {mode} mode"


def item_rows(results: dict) -> list[dict]:
    """The per-question rows of an evaluation (the named or else the longest list of objects); nested
    objects become dotted columns ("hybrid.recall@5"), lists become text."""
    lists = {k: v for k, v in results.items() if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)}
    if not lists:
        return []
    key = next((k for k in ITEM_KEYS if k in lists), max(lists, key=lambda k: len(lists[k])))
    rows = []
    for item in lists[key]:
        row = {}
        for k, v in item.items():
            if isinstance(v, dict):
                for k2, v2 in v.items():
                    row[f"{k}.{k2}"] = ", ".join(map(str, v2)) if isinstance(v2, list) else v2
            elif isinstance(v, list):
                row[k] = ", ".join(map(str, v))
            else:
                row[k] = v
        rows.append(row)
    return rows


# -- adapters: base vs adapter on the held-out split (archivist.finetune.evaluate.compare) --------

SCORES = ("accuracy", "f1", "citations")


def adapter_rows(adapters: list[dict]) -> list[dict]:
    """One table row per registered adapter: name, active, base model, run, and base → adapter scores."""
    rows = []
    for a in adapters:
        m = a.get("metrics") or {}
        base, ours = m.get("base") or {}, m.get("adapter") or {}
        row = {"adapter": a["name"], "active": "✓" if a.get("active") else "", "base model": a.get("base_model"),
               "run": a.get("run_id") or "", "held-out examples": m.get("n")}
        for key in SCORES + ("perplexity",):
            if base.get(key) is not None or ours.get(key) is not None:
                row[f"{key} (base → adapter)"] = f"{_num(base.get(key))} → {_num(ours.get(key))}"
        rows.append(row)
    return rows


def adapter_scores(adapters: list[dict]):
    """A DataFrame for a grouped bar chart: index "<adapter> <score>", columns base and adapter."""
    import pandas as pd

    rows = {}
    for a in adapters:
        m = a.get("metrics") or {}
        base, ours = m.get("base") or {}, m.get("adapter") or {}
        for key in SCORES:
            if base.get(key) is not None and ours.get(key) is not None:
                rows[f"{a['name']} {key}"] = {"base": float(base[key]), "adapter": float(ours[key])}
    return pd.DataFrame(rows).T if rows else pd.DataFrame()


def _num(v) -> str:
    return "–" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)
