"""Key spans and quote units on the GNU Bash Reference Manual (bash 5.2, texinfo's PDF and HTML as
Debian ships them: /usr/share/doc/bash/bashref.pdf, bashref.html): a cross-reference's page number is
no answer (D2 of a new user's probe), a sentence cut by its chunk's end or start is shown as cut (D4),
and a prose line before a code line is no definition's term (D5)."""

from archivist.records import Hit
from archivist.retrieval.keyanswer import key_span
from archivist.retrieval.quote import candidates

QUESTION = "Which signal does an interactive login shell send to all jobs on exit when huponexit is set?"


def _hit(text: str, heading: tuple[str, ...] = ()) -> Hit:
    return Hit(chunk_id=1, document_id=1, document="bashref.pdf", collection="c", text=text, score=1.0,
               heading=heading)


def test_a_cross_references_page_is_no_key_span():
    # bashref.pdf, 6.11 Bash and POSIX (printed page 45 is section 3.7.6) and 3.7.6 Signals
    posix = ("An interactive login shell sends a SIGHUP to all jobs on exit if the huponexit shell option has been "
             "enabled (see Section 3.7.6 [Signals], page 45).")
    signals = ("If the huponexit shell option has been set with shopt (see Section 4.3.2 [The Shopt Builtin], "
               "page 71), Bash sends a SIGHUP to all jobs when an interactive login shell exits.")
    assert key_span(posix, QUESTION) == "SIGHUP"  # was "45": shown as answered, a confident miss
    assert key_span(signals, QUESTION) == "SIGHUP"  # was "71" ("" until "which signal" asked for a signal's name)
    # "p. 12" and "pages 3" are pointers too; an amount that is no pointer stays the key
    assert key_span("The limit is set on p. 12 of the guide.", "How many jobs are allowed?") == ""
    assert key_span("The history list holds 500 commands (see page 12).", "How many commands does the history "
                    "list hold by default?") == "500"


# bashref.pdf, 4.3.1 The Set Builtin (-e): the PDF's page ends inside the sentence, the next chunk
# starts "in a context where -e is ignored, that setting will not have any effect until ..."
PAGE_FOOT = ("If a compound command or shell function executes in a context where -e is being ignored, none of the "
             "commands executed within the compound command or function body will be affected by the -e setting, even "
             "if -e is set and a command returns a failure status. If a compound command or shell function sets -e "
             "while executing")


def test_a_sentence_cut_by_the_passages_end_is_shown_cut():
    texts = [c[1] for c in candidates([_hit("-b Cause the status of terminated background jobs to be reported "
                                            "immediately.\n\n" + PAGE_FOOT)])]
    assert texts[-1] == "If a compound command or shell function sets -e while executing…"  # was without "…"
    assert texts[-2].endswith("returns a failure status.")
    # the next chunk starts inside that sentence: its first unit is shown cut too (was without "…"), but
    # not a sentence that starts after the passage's heading (the Debian Handbook's 11.6.3)
    after = candidates([_hit("in a context where -e is ignored, that setting will not have any effect until the "
                             "compound command or the command containing the function call completes.\n\n"
                             "-f Disable filename expansion (globbing).")])
    assert after[0][1].startswith("…in a context where -e is ignored")
    squid = candidates([_hit("11.6.3. Configuring a Filter\n\nsquid itself does not perform the filtering; this "
                             "action is delegated to squidGuard.",
                             ("11.6. HTTP/FTP Proxy", "11.6.3. Configuring a Filter"))])
    assert squid[-1][1] == "squid itself does not perform the filtering; this action is delegated to squidGuard."
    # a line that is one unit ends as written: a title, a list item, a code line
    for last in ("Invoked as an interactive non-login shell", "if [ -f ~/.bashrc ]; then . ~/.bashrc; fi",
                 "Exit immediately. Return to the shell with fg %1"):
        assert candidates([_hit("Some words that open the passage here.\n" + last)])[-1][1].endswith(last[-8:])


def test_a_prose_line_before_a_code_line_is_no_definitions_term():
    # bashref.html, 6.2 Bash Startup Files ("Invoked as an interactive non-login shell")
    text = ("When an interactive shell that is not a login shell is started, Bash reads and executes commands from "
            "~/.bashrc, if that file exists.\n\nSo, typically, your ~/.bash_profile contains the line\n\n"
            "if [ -f ~/.bashrc ]; then . ~/.bashrc; fi\n\nafter (or before) any login-specific initializations.")
    texts = [c[1] for c in candidates([_hit(text, ("Bash Features", "6.2 Bash Startup Files"))])]
    # was "So, typically, your ~/.bash_profile contains the line — after (or before) any login-specific
    # initializations.", the code line glued to the same term
    assert "if [ -f ~/.bashrc ]; then . ~/.bashrc; fi" in texts
    assert "So, typically, your ~/.bash_profile contains the line" in texts
    assert not any("contains the line — " in t for t in texts)
    # a definition's term stays one: an option, then its description
    git = candidates([_hit("--keep-index\n\nAll changes already added to the index are left intact.")])
    assert [c[1] for c in git] == ["--keep-index — All changes already added to the index are left intact."]
