"""Ask questions about your documents: streamed answers with their sources, history per user,
and thumbs up/down or a corrected answer stored as feedback for fine-tuning."""

from __future__ import annotations

import logging
import threading

import streamlit as st

from archivist import access, adapters, conversations, feedback
from archivist.records import under_notice
from archivist.retrieval.answer import (MAX_QUESTION_TOKENS, QuestionTooLong, ask, check_question, source_label,
                                       stored_answer, withhold_unsaved)
from archivist.ui import core, page_image
from archivist.workspace import transaction

user = core.require_user()
ws = core.workspace()
s = core.settings()
ALL = "All my collections"
BASE = "base"

# -- sidebar: conversation, collection, passages, adapter -------------------------------------

readable = access.readable_collections(ws, user)
past = conversations.list_conversations(ws, user)
if "conv" not in st.session_state:  # carry on with the latest conversation after a reload
    st.session_state["conv"] = past[0]["id"] if past else None

with st.sidebar:
    st.subheader("Chat")
    if st.button("New chat", icon=":material/add:", key="new-chat", width="stretch"):
        st.session_state["conv"] = None
        st.rerun()
    if past:
        ids = [c["id"] for c in past]
        labels = {c["id"]: f"{core.plain((c['title'] or 'Untitled')[:48])} · {core.when(c['last_at'])}" for c in past}
        current = st.session_state["conv"]
        picked = st.selectbox("Conversation", [None] + ids, index=(ids.index(current) + 1) if current in ids else 0,
                              format_func=lambda i: "— new —" if i is None else labels[i], key=f"conv-pick-{current}")
        if picked != current:
            st.session_state["conv"] = picked
            st.rerun()
    # A collection chosen here and since revoked (or deleted) would silently become "all": say so,
    # until another collection is chosen.
    chosen = st.session_state.get("chat-collection")
    if chosen not in (None, ALL) and chosen not in readable:
        st.session_state["chat-collection"] = ALL
        st.session_state["_chat-lost"] = chosen
    collection = st.selectbox("Collection", [ALL] + readable, key="chat-collection")
    if collection != ALL or st.session_state.get("_chat-lost") in readable:
        st.session_state.pop("_chat-lost", None)
    lost = st.session_state.get("_chat-lost")
    k = st.slider("Passages", 1, 10, s.top_k, key="chat-k", help="How many passages the model reads per question")
    active = adapters.active(ws, user)  # None unless this user may use it
    options = [BASE] + core.adapter_names(ws, user)
    adapter = st.selectbox("Adapter", options, index=options.index(active) if active in options else 0, key="chat-adapter",
                           help="'base' is the model as downloaded; the others were fine-tuned on this workspace")

# -- one message -------------------------------------------------------------------------------


def _rate(m: dict, key: str) -> None:
    value = st.session_state.get(key)
    rating = {None: 0, 0: -1, 1: 1}[value]
    _save_feedback(m, rating=rating)


# What a rating or correction may become: said where it is written (docs/access.md, "feedback as training data").
FEEDBACK_USE = ("Your question, the answer and what you write here can teach the model that answers everyone "
                "who may read these documents, when an administrator fine-tunes on feedback; a correction only "
                "once an administrator has approved it (a changed one waits again).")
# Where her correction stands (feedback.find_feedback's `review`): said under it, so a member knows whether it
# is still to be read, or whether a fine-tune may learn it.
REVIEW_STATE = {None: "Your correction is awaiting an admin's review before the model learns it.",
                "approved": "Your correction was approved: a fine-tune on feedback may learn it.",
                "rejected": "Your correction was not approved by an admin: it is not used for training."}


def _save_feedback(m: dict, rating: int | None = None, correction: str | None = None) -> None:
    """Feedback on message `m` (feedback.rate_message: the first makes a row, later ones change it)."""
    try:
        feedback.rate_message(ws, user, m, rating=rating, correction=correction)
    except ValueError as e:
        st.toast(f"Feedback not saved: {core.md_escape(e)}", icon="⚠️")
        return
    st.toast("Thank you — your feedback was saved.", icon="✅")


def show_sources(m: dict) -> None:
    cites = m.get("citations") or []
    if cites:
        st.caption("Sources")
        for c in cites:
            where = f"[{c['n']}] {source_label(c['document'], c.get('page'), c.get('heading'))}" + (f" · {c['collection']}" if c.get('collection') else "")
            weak = c.get("weak")
            key = f"page-{m.get('id')}-{c['n']}"
            # Showing the page reruns the app; a source whose page is shown stays open through it.
            since = {conversations.CHANGED: " · changed since", conversations.DELETED: " · deleted since"}.get(c.get("now"), "")
            with st.expander(core.md_escape(where) + (" · ⚠️ weakly supported" if weak else "") + since, icon=":material/description:",
                             expanded=bool(st.session_state.get(key))):
                facts = [c.get("collection") or "", f"support {c.get('support', 0):.2f}"]
                if weak:
                    facts.append("the answer's words are only loosely backed by this passage")
                st.caption(core.md_escape(" · ".join(f for f in facts if f)))
                if c.get("now") in PASSAGE_NOW:  # re-ingested or deleted since (conversations.messages)
                    st.warning(PASSAGE_NOW[c["now"]], icon=":material/history:")
                st.text(c["text"])  # passages are shown as plain text, never Markdown or HTML
                if c.get("now", conversations.CURRENT) == conversations.CURRENT:  # its boxes are on today's pages
                    page_image.show_citation(st, ws, user, c, key=key)
    elif m.get("passages") and not m.get("not_found"):
        st.caption("The closest passages (none was cited)" if m.get("status") == "uncertain"
                   else "Passages the answer was written from (none was cited)")
        for p in m["passages"]:
            where = f"[{p['n']}] {source_label(p['document'], p.get('page'), p.get('heading'))}" + (f" · {p['collection']}" if p.get('collection') else "")
            with st.expander(core.md_escape(where)):
                if p.get("now") in PASSAGE_NOW:
                    st.warning(PASSAGE_NOW[p["now"]], icon=":material/history:")
                st.text(p.get("text", ""))


# A stored answer's passage whose document changed since (conversations.messages gives each its `now`)
PASSAGE_NOW = {conversations.CHANGED: "This passage is no longer in the document: it was re-ingested since. "
                                      "The text below is what the answer was written from.",
               conversations.DELETED: "This document has been deleted since. "
                                      "The text below is what the answer was written from."}


HOW = {"generated": "Written by the model; every claim in it was found in its sources.",
       "extractive": "Quoted from the documents."}


def show_dropped(m: dict) -> None:
    """The draft's sentences the check rejected: visibly not part of the answer, with the reason. Collapsed
    and worded as the routine step it is (a small model's draft nearly always has some): the answer shown is
    the checked one, and this is for a reader who wants to see what was left out and why."""
    dropped = [c for c in m.get("claims") or [] if c.get("claim", True) and not c.get("supported")]
    if dropped:
        n = len(dropped)
        with st.expander(f"{n} sentence{'s' if n != 1 else ''} the model wrote {'were' if n != 1 else 'was'} left out: "
                         "the sources do not confirm {}".format("them" if n != 1 else "it"), icon=":material/filter_alt:"):
            st.caption("Each sentence the model writes is checked against the passages it cites, and only what they "
                       "confirm is shown as the answer. Left out:")
            for c in dropped:
                st.markdown(f"~~{core.md_escape(c['text'])}~~  \n*{core.md_escape(c.get('reason') or 'unsupported')}*")


def show_assistant(m: dict) -> None:
    status = m.get("status") or ("not_found" if m.get("not_found") else "answered")
    if status == "withheld":  # drawn from a collection this user can no longer read (conversations.messages)
        st.info(core.md_escape(m["content"]), icon=":material/lock:")
        return
    if status == "not_found":
        st.info("**Not in the documents.** " + core.md_escape(m["content"]), icon=":material/search_off:")
    elif status == "uncertain":
        # the answer's notice (Answer.notice) goes in the box, what it quotes under it as text; a message
        # stored before the notice had a field of its own is shown as it was stored
        lead = m.get("notice") or "Not confirmed to answer the question."
        quoted = under_notice(m["content"], m.get("notice", ""))
        st.warning(f"**Uncertain.** {core.md_escape(lead)}", icon=":material/help:")
        st.text(quoted)
        if m.get("mode") == "generated" and quoted:
            st.caption(HOW["generated"])
    else:
        st.text(m["content"])
        st.caption(HOW.get(m.get("mode"), ""))
    show_dropped(m)
    show_sources(m)
    if m.get("question"):
        prior = feedback.find_feedback(ws, user, m["question"], m["content"], message_id=m.get("id"))
        key = f"fb-{m['id']}"
        if key not in st.session_state and prior and prior["rating"]:
            st.session_state[key] = 1 if prior["rating"] > 0 else 0
        c1, c2 = st.columns([1, 6], vertical_alignment="center")
        with c1:
            st.feedback("thumbs", key=key, on_change=_rate, args=(m, key))
        # An expander, not a popover: a popover's box is drawn at the end of the page, so Tab from its button
        # went on to the next message and a keyboard user met the box only after the chat input. Keyed: without a key
        # the rerun of "Save" closed it, hiding what was saved and where it stands (REVIEW_STATE).
        with c2.expander("Write the correct answer", icon=":material/edit:", key=f"fix-open-{m['id']}"):
            with st.form(f"fix-{m['id']}", clear_on_submit=False, border=False):
                text = st.text_area("The correct answer", value=(prior or {}).get("correction") or "", key=f"fix-text-{m['id']}")
                st.caption(FEEDBACK_USE)
                if st.form_submit_button("Save"):
                    _save_feedback(m, correction=text)
                    prior = feedback.find_feedback(ws, user, m["question"], m["content"], message_id=m.get("id"))
                if (prior or {}).get("correction"):
                    st.caption(REVIEW_STATE[prior["review"]])
    caption = []
    if m.get("adapter"):
        caption.append(f"adapter {m['adapter']}")
    if m.get("seconds"):
        caption.append(f"{m['seconds']:.1f} s")
    if caption:
        st.caption(core.md_escape(" · ".join(caption)))


# -- the conversation ----------------------------------------------------------------------------

st.title("Chat")
if lost is not None:
    st.warning(f"You may no longer read the collection {core.md_escape(lost)}: questions now search all your collections.",
               icon=":material/lock:")
if not readable:
    st.info("There are no documents to ask about yet: upload some on the Documents page." if core.is_admin(user) else
            "No collection is shared with you yet, so there is nothing to ask about. Ask an admin for read access.")

# A question stored without an answer after it: the page was reloaded or left while it was being
# answered (the run stops with the session), or answering failed. It says so; the last one can be asked again.
UNANSWERED = "Not answered: the page was reloaded or left while the answer was being written, or answering failed."
# Any click on the page (a thumb, a sidebar control, another question, another page) reruns it, and the run that
# was writing an answer ends there. That run leaves the id of its question in "_answering" (popped once the answer
# is stored or the failure shown): the next run of the same browser session finds it and says what happened. A
# reload starts a new session and keeps the words above.
STOPPED = ("Not answered: the answer was stopped because you clicked something, asked another question or went to "
           "another page while it was being written.")
stopped = st.session_state.setdefault("_stopped", set())
if (cut := st.session_state.pop("_answering", None)) is not None:
    stopped.add(cut)
# A model that cannot be loaded or run (a wrong ARCHIVIST_LLM, a damaged download, no memory left) is for an
# administrator to mend: the page says so in words, and the traceback goes to the server's log, not to the reader.
BROKEN = ("The question could not be answered: the model that writes answers could not be loaded or run on the server. "
          "Please tell an administrator of archivist; the details are in the server's log.")
FAILED = ("The question could not be answered because of a problem on the server. Please tell an administrator "
          "of archivist; the details are in the server's log. \"Ask again\" sends the question once it is mended.")


def _broken(e: Exception) -> None:
    logging.getLogger("archivist.ui.chat").error("answering a question of %s failed", user, exc_info=e)


def _fail(box, why: str) -> None:
    """Say in `box` why the question got no answer and end the run: a failure the reader saw, not a stop (STOPPED)."""
    st.session_state.pop("_answering", None)
    box.error(why)
    st.stop()


conv = st.session_state["conv"]
shown = conversations.messages(ws, conv, user) if conv else []
reask = st.session_state.pop("_reask", None)  # the id of the unanswered last question "Ask again" sends again
reask = shown[-1] if reask is not None and shown and shown[-1]["role"] == "user" and shown[-1]["id"] == reask else None
last_question = None
for i, m in enumerate(shown):
    with st.chat_message(m["role"]):
        if m["role"] == "user":
            last_question = m["content"]
            st.text(m["content"])
            if m is not reask and (i + 1 == len(shown) or shown[i + 1]["role"] == "user"):
                st.caption(STOPPED if m["id"] in stopped else UNANSWERED)
                if i + 1 == len(shown) and st.button("Ask again", key=f"reask-{m['id']}", icon=":material/replay:"):
                    st.session_state["_reask"] = m["id"]
                    st.rerun()
        else:
            m.setdefault("question", last_question)
            show_assistant(m)
if not shown:
    st.caption("Ask a question about your documents. Answers cite the passages they come from; "
               "open a source to read it.")

question = st.chat_input("Ask about your documents", key="chat-input")
if question is not None and not question.strip():
    st.caption("Type a question first.")  # only spaces: nothing is stored or asked
    question = None
if question is None and reask is not None:
    question = reask["content"]  # already stored and shown above: asked again, not stored twice
# The chat box empties on sending: a refused question stays in a box of its own, to be shortened and sent
# from there. It lives in the session, not in one run: typing in the box reruns the page, and the edited
# text was lost with the run that had refused it.
if question is not None:
    st.session_state.pop("_unsent", None)  # a new question replaces a refused one
elif reask is None and (why := st.session_state.get("_unsent")) is not None:
    st.error(why)
    st.text_area("Your question, not sent", key="too-long", height=160)
    send, drop, _ = st.columns([1, 1, 4])
    if send.button("Ask this", key="unsent-ask", type="primary"):
        question = st.session_state["too-long"]
        st.session_state.pop("_unsent")
    elif drop.button("Discard", key="unsent-drop"):
        st.session_state.pop("_unsent")
        st.rerun()


def _unsent(why: str) -> None:
    """Keep `question`, refused for `why`, on the page (above) and end this run."""
    if reask is not None:  # stored already, and shown above with "Ask again"
        st.error(why)
        st.stop()
    st.session_state["_unsent"] = why
    if st.session_state.get("too-long") != question:  # the box's text when it was sent from the box
        st.session_state["too-long"] = question
    st.rerun()


if question:
    try:  # refused before it is stored or searched
        check_question(question, settings=s)
    except QuestionTooLong:  # said without "tokens" and "prompt": the reader counts characters
        _unsent(f"Could not answer: the question is too long ({len(question):,} characters). Please shorten it: a "
                f"question may hold about {MAX_QUESTION_TOKENS * 4:,} characters of English, fewer in other languages.")
    except Exception as e:  # noqa: BLE001 - the chat model's tokenizer did not load
        _broken(e)
        _unsent(BROKEN)
    if conv is None:
        conv = conversations.start_conversation(ws, user)
        st.session_state["conv"] = conv
    if reask is not None and question == reask["content"]:
        hist = conversations.history(ws, conv, user, turns=7)[:-1]  # without the question itself
        st.session_state["_answering"] = reask["id"]
    else:
        hist = conversations.history(ws, conv, user)
        st.session_state["_answering"] = conversations.add_message(ws, conv, user, "user", question)
        with st.chat_message("user"):
            st.text(question)
    with st.chat_message("assistant"):
        box = st.empty()
        box.caption("Searching your documents…")
        try:
            llm, emb = core.models()
        except Exception as e:  # noqa: BLE001 - the question is stored: "Ask again" sends it once this is mended
            _broken(e)
            _fail(box, BROKEN)
        pieces: list[str] = []

        def on_token(piece: str) -> None:  # a draft, replaced by the checked answer when it is done
            pieces.append(piece)
            with box.container():
                st.caption("Draft — being checked against the sources; it is replaced by the checked answer.")
                st.markdown(f":gray[{core.md_escape(''.join(pieces))} ▌]")

        stop = threading.Event()
        try:  # the adapter is named on every call: the one model is shared by every browser session
            answer = ask(ws, question, user=user, collections=None if collection == ALL else [collection], k=k,
                         adapter=None if adapter == BASE else adapter, history=hist, on_token=on_token,
                         llm=llm, embedder=emb, stop=stop, surface="app")
        except (access.AccessDenied, LookupError, ValueError, ConnectionError) as e:  # ConnectionError: the LLM server is down
            _fail(box, f"Could not answer: {core.md_escape(e)}")
        except Exception as e:  # noqa: BLE001 - a model failing mid-answer (out of memory …): words, not a traceback
            _broken(e)
            _fail(box, FAILED)
        finally:
            stop.set()  # the user navigated away or asked again: end generation now
    with transaction(ws.db):  # checked and saved at once: an erase or a revoke after this commit finds the answer
        try:
            withhold_unsaved(ws, user, answer.passages, answer.adapter)
        except (access.AccessDenied, LookupError) as e:
            _fail(box, f"Could not answer: {core.md_escape(e)}")
        conversations.add_message(ws, conv, user, **stored_answer(answer, question, None if collection == ALL else collection))
    st.session_state.pop("_answering", None)
    st.rerun()
