"""One format/version check for every artefact icpd writes and reads back.

Each artefact carries its metadata as a JSON object with a ``format`` name and a
``format_version``: the model dir (``model.json``), the support cache (safetensors metadata
``icpd``), the checkpoint (safetensors metadata) and the TensorRT engine sidecar
(``engines.json``). :func:`check_format` checks such an object the same way for all of them and
raises the caller's own error type (so the CLI prints one line and exits 2) naming the file,
the offending value and the fix. :func:`check_fields` checks the types and ranges of the other
keys (a small schema: one predicate and one description per key), so an edited value is refused
with its name instead of crashing later with a ``KeyError`` or ``ValueError``. :func:`check_schema`
checks a whole nested document (:class:`Obj`, :class:`ListOf`, :class:`MapOf` of rules): every key
path, its type (a bool is not an integer, 18.0 is not an integer) and, in a closed object, no key
this icpd does not know.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ArtifactFormat:
    """What one kind of artefact must look like.

    ``min_version``..``version`` are the format versions this icpd reads; ``fix`` says how to
    make a current one (e.g. "re-run `icpd export`"), used for unreadable, foreign or too old files.
    """

    name: str  # the ``format`` value, e.g. "icpd-model"
    version: int  # the newest ``format_version`` this icpd reads (and the one it writes)
    what: str  # how people call it, e.g. "model description"
    fix: str  # the command that makes a current one
    min_version: int = 1  # the oldest ``format_version`` still read
    required: tuple[str, ...] = ()  # keys every supported version has

    def header(self) -> dict[str, Any]:
        """The two keys a writer puts into the metadata."""
        return {"format": self.name, "format_version": self.version}


def check_format(meta: Any, fmt: ArtifactFormat, source: str | os.PathLike[str], error: type[Exception],
                 required: Iterable[str] = ()) -> int:
    """Check the format name, version and required keys of ``meta``; return its format version.

    Args:
        meta: the parsed metadata (a JSON object).
        fmt: what the artefact must be.
        source: the file, named in every message.
        error: the exception type to raise (the caller's: ``ModelDirError``, ``SupportCacheError``, ...).
        required: more keys to require on top of ``fmt.required``.

    Raises:
        error: not a JSON object, another format, a version newer than this icpd reads (upgrade
            icpd), older than it reads or not an integer (``fmt.fix``), or required keys missing.
    """
    if not isinstance(meta, Mapping):
        raise error(f"{source}: not an icpd {fmt.what} (metadata is {type(meta).__name__}, not a JSON object); "
                    f"{fmt.fix}")
    if meta.get("format") != fmt.name:
        raise error(f"{source}: not an icpd {fmt.what} (format {meta.get('format')!r}, expected {fmt.name!r}); "
                    f"{fmt.fix}")
    raw = meta.get("format_version")
    try:
        version = int(raw)  # safetensors metadata holds strings: "1"
    except (TypeError, ValueError):
        raise error(f"{source}: format_version {raw!r} is not an integer; {fmt.fix}") from None
    if version > fmt.version:
        raise error(f"{source}: {fmt.what} format version {version} is newer than this icpd reads ({fmt.version}); "
                    f"upgrade icpd, or {fmt.fix}")
    if version < fmt.min_version:
        raise error(f"{source}: {fmt.what} format version {version} is older than this icpd reads "
                    f"({fmt.min_version}..{fmt.version}); {fmt.fix}")
    missing = [k for k in (*fmt.required, *required) if k not in meta]
    if missing:
        raise error(f"{source}: {fmt.what} lacks {', '.join(missing)} (incomplete or altered); {fmt.fix}")
    return version


def read_json(path: str | os.PathLike[str], fmt: ArtifactFormat, error: type[Exception],
              required: Iterable[str] = ()) -> dict[str, Any]:
    """Read a JSON metadata file and :func:`check_format` it; a missing or unparsable file raises ``error``."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: file not found; {fmt.fix}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise error(f"{path}: not valid JSON ({err}); {fmt.fix}") from err
    check_format(meta, fmt, path, error, required)
    return meta


# -- a small schema: key -> (predicate, what it must be) ---------------------------------------------
Rule = tuple[Callable[[Any], bool], str]
_SHA256 = re.compile(r"[0-9a-f]{64}")


def is_int(low: int = 0) -> Rule:
    """An integer (not a bool) >= ``low``."""
    return (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low), f"an integer >= {low}"


NON_EMPTY_STR: Rule = (lambda v: isinstance(v, str) and v.strip() != ""), "a non-empty string"
STR: Rule = (lambda v: isinstance(v, str)), "a string"
SHA256: Rule = (lambda v: isinstance(v, str) and _SHA256.fullmatch(v) is not None), "64 lower-case hex digits (sha256)"
FILE_NAME: Rule = ((lambda v: isinstance(v, str) and v not in ("", ".", "..") and "/" not in v and "\\" not in v),
                   "a file name without a folder")
OBJECT: Rule = (lambda v: isinstance(v, Mapping)), "a JSON object"
LIST: Rule = (lambda v: isinstance(v, list)), "a JSON list"


def check_fields(meta: Mapping[str, Any], schema: Mapping[str, Rule], source: str | os.PathLike[str],
                 error: type[Exception], fix: str, prefix: str = "") -> None:
    """Refuse the first key of ``schema`` that is missing from ``meta`` or breaks its rule.

    Args:
        meta: a JSON object (already :func:`check_format`-ed, or a nested entry of one).
        schema: key -> (predicate, description), e.g. ``{"shots": is_int(1)}``.
        source: the file, named in the message.
        error: the exception type to raise.
        fix: what to do, e.g. "recreate it with `icpd cache-support`".
        prefix: the path of a nested entry, e.g. ``files.matcher.``, so the message names the full key.
    """
    for key, (ok, what) in schema.items():
        if key not in meta:
            raise error(f"{source}: {prefix}{key} is missing (incomplete or altered); {fix}")
        if not ok(meta[key]):
            raise error(f"{source}: {prefix}{key} = {json.dumps(meta[key])[:80]} is not {what} "
                        f"(altered or corrupt); {fix}")


NUMBER: Rule = (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)), "a number"
BOOL: Rule = (lambda v: isinstance(v, bool)), "true or false"


def one_of(*values: Any) -> Rule:
    """Exactly one of ``values`` (strings: compared as strings, so 1 is not "1")."""
    return ((lambda v: any(type(v) is type(x) and v == x for x in values)),
            "one of " + ", ".join(json.dumps(x) for x in values))


def either(*rules: Rule) -> Rule:
    return (lambda v: any(ok(v) for ok, _ in rules)), " or ".join(what for _, what in rules)


# -- nested documents ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Obj:
    """A JSON object: ``fields`` key -> schema; ``optional`` keys may be absent; ``open``: keys not in
    ``fields`` are allowed (a third party's config, a free-form report), else they are refused."""

    fields: Mapping[str, Schema]
    optional: frozenset[str] = frozenset()
    open: bool = False


@dataclass(frozen=True)
class ListOf:
    """A JSON list whose items follow ``item``; ``length``: exactly that many."""

    item: Schema
    length: int | None = None


@dataclass(frozen=True)
class MapOf:
    """A JSON object with any keys (e.g. tensor names), every value following ``value``."""

    value: Schema


Schema = Rule | Obj | ListOf | MapOf


def _show(value: Any) -> str:
    return json.dumps(value)[:80]


def check_schema(value: Any, schema: Schema, source: str | os.PathLike[str], error: type[Exception], fix: str,
                 path: str = "") -> None:
    """Refuse the first key path of ``value`` (a parsed JSON document) that breaks ``schema``.

    The message names ``source``, the key path (``preset.image_size``, ``files.encoder.external_data[0].bytes``),
    the value found, what it must be, and ``fix``; an unknown key in a closed :class:`Obj` is refused too.

    Raises:
        error: a key missing, of the wrong type or out of range, or unknown.
    """
    where = path or "the document"
    if isinstance(schema, tuple):
        ok, what = schema
        if not ok(value):
            raise error(f"{source}: {where} = {_show(value)} is not {what} (altered or corrupt); {fix}")
    elif isinstance(schema, ListOf):
        n = schema.length
        if not isinstance(value, list) or (n is not None and len(value) != n):
            what = "a JSON list" + (f" of {n} items" if n is not None else "")
            raise error(f"{source}: {where} = {_show(value)} is not {what} (altered or corrupt); {fix}")
        for i, item in enumerate(value):
            check_schema(item, schema.item, source, error, fix, f"{path}[{i}]")
    else:
        if not isinstance(value, Mapping):
            raise error(f"{source}: {where} = {_show(value)} is not a JSON object (altered or corrupt); {fix}")
        if isinstance(schema, MapOf):
            for key, item in value.items():
                check_schema(item, schema.value, source, error, fix, f"{path}.{key}" if path else key)
            return
        for key, sub in schema.fields.items():
            full = f"{path}.{key}" if path else key
            if key not in value:
                if key in schema.optional:
                    continue
                raise error(f"{source}: {full} is missing (incomplete or altered); {fix}")
            check_schema(value[key], sub, source, error, fix, full)
        unknown = [k for k in value if k not in schema.fields]
        if unknown and not schema.open:
            full = f"{path}.{unknown[0]}" if path else unknown[0]
            known = ", ".join(schema.fields)
            raise error(f"{source}: unknown key {full} = {_show(value[unknown[0]])} (altered, or written by a "
                        f"newer icpd; {where if path else 'the top level'} has {known}); remove it, or {fix}")
