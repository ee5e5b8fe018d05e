"""Quoted answers on real manuals as Debian ships them (/usr/share/doc): a quote's label is the term
its sentence defines or nothing, never a command shown at a prompt, a line that prose runs into or a
figure's caption; a PDF's definition line ("break break [n] Exit ...") is whole, not cut; and a name
in capitals that code uses (SIGHUP, EINTR, PATH) is the key span of "which signal / error / variable"."""

from archivist.records import Hit
from archivist.retrieval.keyanswer import TermStats, key_answer, key_span
from archivist.retrieval.quote import CUT, JOIN, candidates


def _hit(text: str, heading: tuple[str, ...] = ()) -> Hit:
    return Hit(chunk_id=1, document_id=1, document="manual", collection="c", text=text, score=1.0, heading=heading,
               dense_score=0.6)


def _texts(text: str, heading: tuple[str, ...] = ()) -> list[str]:
    return [c[1] for c in candidates([_hit(text, heading)])]


# git's user manual, "Fixing mistakes" (/usr/share/doc/git-doc/user-manual.txt), as the HTML reader gives it
FIXING = """Fixing mistakes

If you've messed up the working tree, but haven't yet committed your mistake, you can return the entire working tree to the last committed state with

$ git restore --staged --worktree :/

If you make a commit that you later wish you hadn't, there are two fundamentally different ways to fix the problem:

You can create a new commit that undoes whatever was done by the old commit. This is the correct thing if your mistake has already been made public.
"""

# git-stash(1), OPTIONS (/usr/share/doc/git-doc/git-stash.txt): a term and its description
STASH = """-k

--keep-index

--no-keep-index

This option is only valid for push and save commands.

All changes already added to the index are left intact.
"""


def test_a_command_at_a_prompt_is_no_label_of_the_sentences_after_it():
    texts = _texts(FIXING, ("Git User Manual", "Fixing mistakes"))
    # was "$ git restore --staged --worktree :/ — You can create a new commit that undoes ..."
    assert not any(t.startswith("$ git restore") and JOIN in t for t in texts)
    assert "$ git restore --staged --worktree :/" in texts  # the command stays quotable, as itself
    # and the sentence that runs into it ends with it (it ended in "... to the last committed state with")
    assert "If you've messed up the working tree, but haven't yet committed your mistake, you can return the entire " \
           "working tree to the last committed state with $ git restore --staged --worktree :/" in texts
    assert "You can create a new commit that undoes whatever was done by the old commit." in texts
    # without the prompt it is still an example: the prose line before it runs into it ("... state with")
    texts = _texts(FIXING.replace("$ git", "git"), ("Git User Manual", "Fixing mistakes"))
    assert "git restore --staged --worktree :/" in texts
    assert not any(JOIN in t for t in texts)
    # a definition's term still labels its description, after a description that ends without a mark
    # (git-log(1), EXAMPLES: "Show the whole commit history, but skip any merges")
    assert f"--no-keep-index{JOIN}All changes already added to the index are left intact." in _texts(STASH)
    examples = ("git log --no-merges\n\nShow the whole commit history, but skip any merges\n\n"
                "git log v2.6.12.. include/scsi drivers/scsi\n\nShow all commits since version v2.6.12 that changed any "
                "file in the include/scsi or drivers/scsi subdirectories\n")
    assert f"git log v2.6.12.. include/scsi drivers/scsi{JOIN}Show all commits since version v2.6.12 that changed " \
           f"any file in the include/scsi or drivers/scsi subdirectories" in _texts(examples)


def test_a_figures_caption_is_no_label():
    # The Debian Administrator's Handbook, 13.3.1 GNOME (/usr/share/doc/debian-handbook/html/en-US/
    # sect.graphical-desktops.html): the caption under the screenshot, then the next paragraph
    text = ("Figure 13.1. The GNOME desktop\n\nFor administrators, GNOME seems to be better prepared for massive "
            "deployments. Application configuration is handled through the GSettings interface and stores its data "
            "in the DConf database.\n")
    texts = _texts(text)
    assert "For administrators, GNOME seems to be better prepared for massive deployments." in texts
    assert not any(JOIN in t for t in texts)


def test_a_pdf_definition_line_is_whole_and_a_cut_sentence_is_still_cut():
    # The GNU Bash manual's PDF (/usr/share/doc/bash-doc/bashref.pdf) as the PDF reader gives a passage that
    # starts at a builtin's or a definition's line: the term, its synopsis and its description on one line
    for line, first in [
        ("break break [n] Exit from a for, while, until, or select loop. If n is supplied, the nth enclosing loop is "
         "exited.", "break break [n] Exit from a for, while, until, or select loop."),
        ("process group A collection of related processes each having the same process group id.",
         "process group A collection of related processes each having the same process group id."),
    ]:
        texts = _texts(line)
        assert texts[0] == first, texts[0]  # was CUT + first
    # a chunk that starts inside a sentence still shows it cut: bashref.pdf, 4.3.1 (-e), and git-rebase(1)
    # ("You can leave out at most one of A and B, ..." cut after "leave out at")
    assert _texts("in a context where -e is ignored, that setting will not have any effect until the compound "
                  "command or the command containing the function call completes.")[0].startswith(CUT)
    assert _texts("most one of A and B, in which case it defaults to HEAD.")[0] == \
        CUT + "most one of A and B, in which case it defaults to HEAD."


SIGNAL_Q = "Which signal does Bash send to all jobs when an interactive login shell exits?"
# bashref.html, 3.7.6 Signals
SIGNALS = ("If the huponexit shell option has been set with shopt (see The Shopt Builtin), Bash sends a SIGHUP to all "
           "jobs when an interactive login shell exits.")


def test_a_name_in_capitals_is_the_key_span_of_what_the_question_asks_for():
    assert key_span(SIGNALS, SIGNAL_Q) == "SIGHUP"  # was "": a 6-letter name in capitals read as an acronym
    assert key_span("Stopped jobs are sent SIGCONT to ensure that they receive the SIGHUP.",
                    "Which signal are stopped jobs sent so that they receive the SIGHUP?") == "SIGCONT"
    # bashref.html, 4.1 Bourne Shell Builtins (.): the variable the sentence names as one, or writes as a value
    dot = ("If filename does not contain a slash, the PATH variable is used to find filename, but filename does not "
           "need to be executable.")
    assert key_span(dot, "Which variable is used to find the file that the . builtin reads?") == "PATH"
    posix = "When Bash is not in POSIX mode, it searches the current directory if filename is not found in $PATH."
    assert key_span(posix, "Which variable does Bash search for filename?") == "$PATH"  # not POSIX, an acronym
    # git's release notes 2.31.0 (/usr/share/doc/git/RelNotes/2.31.0.txt): an errno value
    eintr = ("It is reported that open() on some platforms (e.g. macOS Big Sur) can return EINTR even though our timers "
             "are set up with SA_RESTART.")
    assert key_span(eintr, "Which error can open() return on macOS Big Sur even with SA_RESTART timers?") == "EINTR"
    # an abbreviation is still no key span where nothing asks for a name in capitals
    assert key_span("When Bash is not in POSIX mode, it searches the current directory.",
                    "What does Bash search when it is not in the standard mode?") == ""


def test_the_key_answer_shows_the_signal(embedder):
    passages = [_hit("3.7.6 Signals\n\n" + SIGNALS, ("Bash Reference Manual", "3.7.6 Signals"))]
    k = key_answer(SIGNAL_Q, passages, embedder, TermStats(), 0.8)
    assert k.span == "SIGHUP"
    assert k.text == f"SIGHUP{JOIN}{SIGNALS} [1]"
