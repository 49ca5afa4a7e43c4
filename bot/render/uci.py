"""UCI sections and the one dumb renderer that turns them into ``uci batch`` scripts.

Converters (``modem.py``, ``router_wireguard.py``, ``firewall.py``) produce
:class:`UciSection` values; this module is the only place that knows UCI syntax.

Quoting, as verified against OpenWrt 23.05's own ``uci`` (``tests/test_render_uci_real.py``):

- Every value goes through :func:`uci_quote`: single quotes, an embedded ``'`` written as
  ``'\\''`` (the same form ``uci show``/``uci export`` print). Inside single quotes uci's
  parser takes everything literally: ``;``, ``$(...)``, backticks, ``\\``, ``"``, ``#``,
  leading/trailing blanks, TAB, CR, LF and any UTF-8. A newline inside the quotes continues
  the value on the next batch line; the config file and ``uci get`` keep it byte for byte.
  ``uci export`` output is shell-quoted the same way, so OpenWrt's ``config_load`` (which
  ``eval``s it) does not run anything either.
- uci's parser rejects every other C0 control character (U+0001..U+001F except TAB, LF, CR:
  "Parse error (unknown)", the command is skipped) and NUL cannot cross its C strings. There
  is no escape that stores them, so they are refused with :class:`ValidationFailed` naming
  the option (never echoing the value: it may be a password).
- ``set pkg.sec.opt=''`` *deletes* the option, so the empty string cannot be stored; it is
  refused too (a converter leaves an unset option out instead).
- Package, section, option and type names are identifiers (``[A-Za-z0-9_]+``), checked
  here, so they are written unquoted in paths.
- ``uci batch`` exits 0 even when a command fails (it prints ``uci: Entry not found`` and
  goes on). The scripts rendered here print nothing when every command succeeds, so the
  caller can treat any output on stderr as a failure. They do not ``commit``: the caller
  decides between ``uci commit`` and an apply with rollback.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import cast

from bot.errors import ValidationFailed

__all__ = [
    "SECRET_OPTIONS",
    "ParsedUci",
    "UciScalar",
    "UciSection",
    "UciValue",
    "diff_sections",
    "parse_uci_show",
    "render_batch",
    "render_uci_config",
    "uci_quote",
    "uci_str",
]

UciScalar = str | int | bool
UciValue = UciScalar | Sequence[str]
# ``{"network.wg0": {".type": "interface", "proto": "wireguard", "addresses": ["..."]}}``
ParsedUci = dict[str, dict[str, str | list[str]]]

_IDENT_RE = re.compile(r"[A-Za-z0-9_]+")
# C0 controls uci's parser cannot take (TAB, LF and CR it stores literally), and NUL.
_BAD_CHARS_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
# Options whose values a diff must not print (chat and logs see diffs).
SECRET_OPTIONS = frozenset({"private_key", "preshared_key", "password", "pincode", "key"})


def _check_ident(kind: str, value: str) -> None:
    if not isinstance(value, str) or _IDENT_RE.fullmatch(value) is None:
        raise ValidationFailed(
            f"{value!r} is not a valid UCI {kind} name: use letters, digits and '_' only."
        )


def uci_str(value: UciScalar, *, where: str = "value") -> str:
    """The string uci stores for a scalar: bools as ``'1'``/``'0'``, ints in decimal."""
    if isinstance(value, bool):  # before int: bool is an int
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, str):
        raise ValidationFailed(f"{where}: a UCI value must be text, a number or a flag.")
    if value == "":
        raise ValidationFailed(f"{where}: is empty; uci cannot store an empty value.")
    bad = _BAD_CHARS_RE.search(value)
    if bad is not None:
        raise ValidationFailed(
            f"{where}: contains the control character U+{ord(bad.group()):04X}, "
            "which OpenWrt's uci cannot store. Remove it and try again."
        )
    return value


def uci_quote(value: UciScalar, *, where: str = "value") -> str:
    """Quote one value for a ``uci batch`` line or a config file; the only quoting there is."""
    return "'" + uci_str(value, where=where).replace("'", "'\\''") + "'"


def _normalise(where: str, value: object) -> str | tuple[str, ...]:
    if isinstance(value, str | int | bool):
        return uci_str(value, where=where)
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        if not value:
            raise ValidationFailed(f"{where}: an empty list cannot be stored; leave it out.")
        return tuple(uci_str(v, where=f"{where}[{i}]") for i, v in enumerate(value))
    raise ValidationFailed(f"{where}: a UCI value must be text, a number, a flag or a list.")


@dataclass(frozen=True)
class UciSection:
    """One named UCI section; options keep the order the converter gave them.

    Validated and normalised on construction: afterwards ``options`` is a read-only mapping
    of strings (bools as ``'1'``/``'0'``, ints in decimal) and tuples of strings (lists).
    """

    package: str
    type: str
    name: str
    options: Mapping[str, UciValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_ident("package", self.package)
        _check_ident("section type", self.type)
        _check_ident("section", self.name)
        normal: dict[str, str | tuple[str, ...]] = {}
        for opt, value in self.options.items():
            _check_ident("option", opt)
            normal[opt] = _normalise(f"{self.path}.{opt}", value)
        # Frozen all the way down: the renderers may rely on options not changing.
        object.__setattr__(self, "options", MappingProxyType(normal))

    @property
    def normalized(self) -> Mapping[str, str | tuple[str, ...]]:
        """Options as uci stores them: strings, and tuples of strings for lists."""
        return cast(Mapping[str, str | tuple[str, ...]], self.options)

    @property
    def path(self) -> str:
        return f"{self.package}.{self.name}"

    def values(self) -> dict[str, str | list[str]]:
        """Options as strings and lists of strings (the shape :func:`parse_uci_show` gives)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.normalized.items()}


def _unique(sections: Iterable[UciSection]) -> list[UciSection]:
    out: list[UciSection] = []
    seen: set[str] = set()
    for s in sections:
        if s.path in seen:
            raise ValidationFailed(f"{s.path} is rendered twice; each section must be unique.")
        seen.add(s.path)
        out.append(s)
    return out


def render_batch(sections: Iterable[UciSection], *, replace_sections: bool = True) -> str:
    """A ``uci batch`` script that makes each section as given; re-running it changes nothing.

    ``replace_sections=True`` (the default) recreates every section, so options a previous
    version set and this one does not are dropped: ``set`` (so the ``delete`` cannot fail),
    ``delete``, ``set`` again, then the options. ``False`` merges: options not given stay;
    lists are first cleared with ``set opt=''``, which uci treats as "delete if present"
    and which, unlike ``delete``, prints no error when the option is absent.
    """
    lines: list[str] = []
    for s in _unique(sections):
        kind = uci_quote(s.type, where=s.path)
        lines.append(f"set {s.path}={kind}")
        if replace_sections:
            lines.append(f"delete {s.path}")
            lines.append(f"set {s.path}={kind}")
        for opt, value in s.normalized.items():
            where = f"{s.path}.{opt}"
            if isinstance(value, tuple):
                if not replace_sections:
                    lines.append(f"set {where}=''")
                lines.extend(f"add_list {where}={uci_quote(v, where=where)}" for v in value)
            else:
                lines.append(f"set {where}={uci_quote(value, where=where)}")
    return "".join(line + "\n" for line in lines)


def render_uci_config(sections: Iterable[UciSection]) -> str:
    """The sections in ``uci export`` form: ``package`` headers, tabs, one blank line after each.

    This is byte-identical to ``uci export PKG`` of a package holding just these sections,
    and ``uci import`` reads it back.
    """
    by_package: dict[str, list[UciSection]] = {}
    for s in _unique(sections):
        by_package.setdefault(s.package, []).append(s)
    out: list[str] = []
    for package, group in by_package.items():
        out.append(f"package {package}\n\n")
        for s in group:
            out.append(f"config {s.type} {uci_quote(s.name, where=s.path)}\n")
            for opt, value in s.normalized.items():
                where = f"{s.path}.{opt}"
                if isinstance(value, tuple):
                    out.extend(f"\tlist {opt} {uci_quote(v, where=where)}\n" for v in value)
                else:
                    out.append(f"\toption {opt} {uci_quote(value, where=where)}\n")
            out.append("\n")
    return "".join(out)


# --- reading back ---------------------------------------------------------------------------

# package . (named section | @type[index]) [. option]
_KEY_RE = re.compile(
    r"([A-Za-z0-9_-]+)\.((?:@[A-Za-z0-9_]+\[-?\d+\])|[A-Za-z0-9_]+)(?:\.([A-Za-z0-9_]+))?"
)


def _shell_words(text: str, pos: int) -> tuple[list[str], int]:
    """Read shell-quoted words from ``pos`` to the end of the logical line.

    ``uci show`` writes ``'it'\\''s'`` for ``it's`` and ``'a' 'b'`` for a list; a quoted
    value may contain newlines, so lines are only split outside quotes.
    """
    words: list[str] = []
    cur: list[str] = []
    in_word = False
    n = len(text)
    while pos < n:
        c = text[pos]
        if c == "'":
            end = text.find("'", pos + 1)
            if end < 0:
                raise ValidationFailed("The uci output ends inside a quoted value.")
            cur.append(text[pos + 1 : end])
            in_word = True
            pos = end + 1
        elif c == "\\" and pos + 1 < n:
            cur.append(text[pos + 1])
            in_word = True
            pos += 2
        elif c == "\n":
            pos += 1
            break
        elif c in " \t":
            if in_word:
                words.append("".join(cur))
                cur, in_word = [], False
            pos += 1
        else:
            cur.append(c)
            in_word = True
            pos += 1
    if in_word:
        words.append("".join(cur))
    return words, pos


def parse_uci_show(text: str) -> ParsedUci:
    """Parse ``uci show PKG`` (or ``uci -X show``) into ``{"pkg.section": {".type": ..., ...}}``.

    An option holding several values comes back as a list. ``uci show`` prints a one-item
    list exactly like an option, so such a list comes back as a string; :func:`diff_sections`
    treats the two as equal.
    """
    result: ParsedUci = {}
    pos, n = 0, len(text)
    while pos < n:
        if text[pos] == "\n":
            pos += 1
            continue
        eq = text.find("=", pos)
        nl = text.find("\n", pos)
        if eq < 0 or (0 <= nl < eq):
            line = text[pos : nl if nl >= 0 else n]
            raise ValidationFailed(f"Unexpected line in uci output: {line[:80]!r}")
        m = _KEY_RE.fullmatch(text[pos:eq])
        if m is None:
            raise ValidationFailed(f"Unexpected key in uci output: {text[pos:eq][:80]!r}")
        words, pos = _shell_words(text, eq + 1)
        package, section, option = m.groups()
        key = f"{package}.{section}"
        if option is None:
            result.setdefault(key, {})[".type"] = words[0] if words else ""
        else:
            value: str | list[str] = words[0] if len(words) == 1 else words
            result.setdefault(key, {})[option] = value
    return result


def _show(option: str, value: str | list[str] | None) -> str:
    if value is None:
        return "(unset)"
    if option in SECRET_OPTIONS:
        return "(secret)"
    if isinstance(value, list):
        return " ".join(uci_quote(v) if v else "''" for v in value)
    return uci_quote(value) if value else "''"


def _same(a: str | list[str] | None, b: str | list[str] | None) -> bool:
    # A one-item list and an option print alike in ``uci show``.
    def as_list(v: str | list[str] | None) -> list[str] | None:
        return [v] if isinstance(v, str) else v

    return as_list(a) == as_list(b)


def diff_sections(
    current: ParsedUci, wanted: Iterable[UciSection], *, replace_sections: bool = True
) -> list[str]:
    """What applying ``wanted`` would change, one human line each; empty when nothing would.

    Secret options (:data:`SECRET_OPTIONS`) are shown as ``(secret)``. Only the wanted
    sections are compared: other sections on the router are not camreach's business. With
    ``replace_sections`` (as :func:`render_batch` does) extra options are reported removed.
    """
    lines: list[str] = []
    for s in _unique(wanted):
        have = current.get(s.path)
        want = s.values()
        if have is None:
            lines.append(f"+ {s.path} ({s.type})")
            lines.extend(f"+ {s.path}.{k}: {_show(k, v)}" for k, v in want.items())
            continue
        if have.get(".type") != s.type:
            old_type = have.get(".type")
            lines.append(f"{s.path}: type {old_type!r} → {s.type!r}")
        for opt, value in want.items():
            old = have.get(opt)
            if old is None:
                lines.append(f"+ {s.path}.{opt}: {_show(opt, value)}")
            elif not _same(old, value):
                lines.append(f"{s.path}.{opt}: {_show(opt, old)} → {_show(opt, value)}")
        if replace_sections:
            for opt in have:
                if opt != ".type" and opt not in want:
                    lines.append(f"- {s.path}.{opt}: {_show(opt, have[opt])}")
    return lines
