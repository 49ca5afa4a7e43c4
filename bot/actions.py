"""Actions named once, shown as each surface spells them.

Core messages name what to do next with :func:`action` ("router detect farmhouse"); the
boundary of each surface renders the mark: ``camreach router detect farmhouse`` on a terminal,
``/router detect farmhouse`` in Telegram. A message never says which surface it came from.
"""

from __future__ import annotations

import re

_MARK = re.compile(r"⟦([^⟧]*)⟧")

# Where the surfaces differ, the spelling for each: (terminal, Telegram).
_SPELLING: dict[str, tuple[str, str]] = {
    "setup": ("site apply FILE", "setup"),
    "site list": ("site list", "status"),
    "droplet destroy": ("site destroy", "droplet destroy"),
}


def action(*words: str) -> str:
    """A command to mention in a message, e.g. ``action("router detect", site)``."""
    return "⟦" + " ".join(w for w in words if w) + "⟧"


def _split(marked: str) -> tuple[str, str]:
    for verb, (terminal, chat) in _SPELLING.items():
        if marked == verb or marked.startswith(verb + " "):
            rest = marked[len(verb):]
            # A site after "setup" only makes sense in chat, where /setup takes it.
            return terminal, chat + rest
    return marked, marked


def for_terminal(text: str) -> str:
    return _MARK.sub(lambda m: f"`camreach {_split(m.group(1))[0]}`", text)


def for_chat(text: str) -> str:
    return _MARK.sub(lambda m: "/" + _split(m.group(1))[1], text)
