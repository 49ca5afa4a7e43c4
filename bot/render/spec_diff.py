"""A readable field-by-field diff of two site specs (JSON documents); pure, text out.

One line per changed leaf, with its dotted path::

    vpn.port: 51820 → 51821
    cameras.front.host: 192.168.1.64 → 192.168.1.65
    + cameras.back: host=192.168.1.65, port=80, user=admin, kind=hikvision
    - cameras.porch: host=192.168.1.66, port=80, user=admin, kind=onvif

Lists of mappings that all have a unique ``name`` (cameras) are matched by name, other lists
by position. Values read like YAML scalars (strings plain, ``true``/``false``, ``(none)`` for a
missing value) and are never shortened. A field whose name says it holds a secret (``...password``,
``...token``, ``...key``) shows ``(hidden)`` instead of its value; specs only hold the *names* of
environment variables (``password_env``), which are shown.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

ARROW = "→"
NONE = "(none)"
HIDDEN = "(hidden)"
_SECRET_SUFFIXES = ("password", "passphrase", "token", "key", "secret", "pin")
# Strings a reader would take for something else (a number, a boolean, nothing) get quotes.
_AMBIGUOUS = re.compile(
    r"-?\d+(\.\d+)?([eE][-+]?\d+)?|true|false|yes|no|on|off|null|~|\(none\)|\(hidden\)",
    re.IGNORECASE,
)


def spec_diff(old: Any, new: Any, path: str = "") -> list[str]:
    """The differences from ``old`` to ``new``, one line per changed leaf ([] when equal)."""
    lines: list[str] = []
    _diff(old, new, path, path.rsplit(".", 1)[-1], lines)
    return lines


def is_secret_field(name: str) -> bool:
    """True for a field that would hold a secret itself (not the name of an env variable)."""
    low = name.lower()
    return not low.endswith("_env") and low.endswith(_SECRET_SUFFIXES)


def render_value(value: Any) -> str:
    """One value on one line: scalars as YAML would print them, containers in flow form."""
    if isinstance(value, Mapping):
        return "{" + _pairs(value) + "}"
    if _is_list(value):
        return "[" + ", ".join(render_value(v) for v in value) + "]"
    return _scalar(value)


# -- internals ----------------------------------------------------------------------------


def _diff(old: Any, new: Any, path: str, field: str, out: list[str]) -> None:
    """``field`` is the mapping key the values sit under (list items share their list's)."""
    if old == new:
        return
    if is_secret_field(field):
        out.append(f"{_label(path)}changed {HIDDEN}")
    elif _is_map_or_none(old) and _is_map_or_none(new):
        _diff_maps(old or {}, new or {}, path, out)
    elif _is_list_or_none(old) and _is_list_or_none(new) and (old or new):
        _diff_lists(list(old or []), list(new or []), path, field, out)
    else:
        out.append(f"{_label(path)}{render_value(old)} {ARROW} {render_value(new)}")


def _diff_maps(old: Mapping[Any, Any], new: Mapping[Any, Any], path: str,
               out: list[str]) -> None:
    keys = list(new) + [k for k in old if k not in new]  # document order, removed keys last
    for key in keys:
        _diff(old.get(key), new.get(key), _join(path, key), str(key), out)


def _diff_lists(old: list[Any], new: list[Any], path: str, field: str,
                out: list[str]) -> None:
    if not any(isinstance(v, Mapping) or _is_list(v) for v in old + new):
        # Scalars: the whole list on one line reads better than one line per position.
        out.append(f"{_label(path)}{render_value(old)} {ARROW} {render_value(new)}")
        return
    old_named, new_named = _by_name(old), _by_name(new)
    if old_named is not None and new_named is not None:
        for name, item in new_named.items():
            if name in old_named:
                _diff(old_named[name], item, _join(path, name), field, out)
            else:
                out.append(_item_line("+", _join(path, name), item, skip="name"))
        for name, item in old_named.items():
            if name not in new_named:
                out.append(_item_line("-", _join(path, name), item, skip="name"))
        kept_old = [n for n in old_named if n in new_named]
        kept_new = [n for n in new_named if n in old_named]
        if kept_old != kept_new:
            out.append(f"{_label(path)}order {', '.join(kept_old)} {ARROW} "
                       f"{', '.join(kept_new)}")
        return
    for i in range(max(len(old), len(new))):
        sub = _join(path, i)
        if i >= len(old):
            out.append(_item_line("+", sub, new[i]))
        elif i >= len(new):
            out.append(_item_line("-", sub, old[i]))
        else:
            _diff(old[i], new[i], sub, field, out)


def _by_name(items: list[Any]) -> dict[str, Any] | None:
    """Items keyed by their ``name`` when every item is a mapping with a unique string name."""
    named: dict[str, Any] = {}
    for item in items:
        name = item.get("name") if isinstance(item, Mapping) else None
        if not isinstance(name, str) or not name or name in named:
            return None
        named[name] = item
    return named


def _item_line(sign: str, path: str, item: Any, *, skip: str | None = None) -> str:
    if isinstance(item, Mapping):
        body = _pairs({k: v for k, v in item.items() if k != skip})
    else:
        body = render_value(item)
    return f"{sign} {path}: {body}" if body else f"{sign} {path}"


def _pairs(mapping: Mapping[Any, Any]) -> str:
    """``key=value, ...`` of the set fields (nested mappings flattened with dotted keys)."""
    return ", ".join(_flat_pairs(mapping, ""))


def _flat_pairs(mapping: Mapping[Any, Any], prefix: str) -> list[str]:
    parts: list[str] = []
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if value is None:
            continue
        if is_secret_field(str(key)):
            parts.append(f"{name}={HIDDEN}")
        elif isinstance(value, Mapping):
            parts += _flat_pairs(value, f"{name}.")
        else:
            parts.append(f"{name}={render_value(value)}")
    return parts


def _scalar(value: Any) -> str:
    if value is None:
        return NONE
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if _needs_quotes(text) else text


def _needs_quotes(text: str) -> bool:
    """Quote a string only where plain text would mislead: blanks, separators, look-alikes."""
    return (
        not text
        or text != text.strip()
        or any(ch < " " or ch == "\x7f" for ch in text)
        or any(mark in text for mark in ('"', ", ", f" {ARROW} "))
        or text[0] in "[{"
        or _AMBIGUOUS.fullmatch(text) is not None
    )


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes, bytearray))


def _is_map_or_none(value: Any) -> bool:
    return value is None or isinstance(value, Mapping)


def _is_list_or_none(value: Any) -> bool:
    return value is None or _is_list(value)


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _label(path: str) -> str:
    return f"{path}: " if path else ""
