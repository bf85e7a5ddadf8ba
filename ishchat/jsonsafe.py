"""Parsing JSON from clients safely: one loader for the API's parser and the gateway.

json.loads recurses once per nesting level, so 100,000 nested arrays end in a
RecursionError (a 500), and a structure that parses just under the interpreter's
limit fails later when it is encoded again. Text JSON can carry that no
database or upstream accepts: a lone surrogate (`"\\ud800"`) cannot be encoded
as UTF-8, a NUL (`"\\u0000"`) cannot be stored in PostgreSQL's text or jsonb.

`loads` refuses all of these with JSONRefused (a ValueError), the callers
answer 400: nesting deeper than `max_depth` containers, lone surrogates
anywhere, NUL characters unless `allow_nul` (the gateway forwards message
content as it is, and checks only the fields it stores). `text_problem` is
the same check for a value that did not come from JSON text (a form field,
a service argument).
"""

from __future__ import annotations

import codecs
import json
import re
from typing import IO, Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError

MAX_DEPTH = 64  # containers inside containers; far beyond any real request, far below the interpreter's limit

# Hints: without these escapes a parsed value cannot hold a NUL or a surrogate (raw control characters
# and invalid UTF-8 are refused by the parser), so most bodies skip the walk over every string.
_NUL_ESCAPE = re.compile(r"\\u0000")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


class JSONRefused(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise JSONRefused(f"{name} is not a JSON value.")


def loads(raw: bytes | str, *, max_depth: int = MAX_DEPTH, allow_nul: bool = False) -> Any:
    """Parse UTF-8 JSON (NaN and Infinity refused), or raise JSONRefused saying what is wrong."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        raise JSONRefused("The body is not UTF-8.") from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise JSONRefused(f"JSON nested deeper than {max_depth} levels.") from None
    except JSONRefused:
        raise
    except ValueError as exc:
        raise JSONRefused(str(exc)) from None
    strings = bool(_SURROGATE_ESCAPE.search(text) or (not allow_nul and _NUL_ESCAPE.search(text)))
    problem = _problem(value, max_depth=max_depth, strings=strings, allow_nul=allow_nul)
    if problem is not None:
        raise JSONRefused(problem)
    return value


def text_problem(value: Any, *, max_depth: int, allow_nul: bool = False) -> str | None:
    """What makes `value` (made of dicts, lists, strings, numbers) impossible to store as JSON, or None."""
    return _problem(value, max_depth=max_depth, strings=True, allow_nul=allow_nul)


def string_problem(value: str, *, allow_nul: bool = False) -> str | None:
    if not allow_nul and "\x00" in value:
        return "NUL characters (\\u0000) are not accepted."
    if not value.isascii() and _SURROGATE.search(value):
        return "Lone surrogates (\\ud800-\\udfff) are not accepted: the text is not valid Unicode."
    return None


def _problem(value: Any, *, max_depth: int, strings: bool, allow_nul: bool) -> str | None:
    """Walk the containers without recursion: too deep, or (when `strings`) a refused string key or value."""
    kinds = (str, dict, list) if strings else (dict, list)
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if strings and (problem := string_problem(item, allow_nul=allow_nul)):
                return problem
            continue
        if isinstance(item, dict):
            children: Any = item.values()
            if strings:
                stack.extend((key, depth) for key in item)
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            return f"JSON nested deeper than {max_depth} levels."
        stack.extend((child, depth + 1) for child in children if isinstance(child, kinds))
    return None


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser (REST_FRAMEWORK's DEFAULT_PARSER_CLASSES) on `loads`: what it refuses is a 400."""

    def parse(self, stream: IO[bytes], media_type: str | None = None, parser_context: Any = None) -> Any:
        encoding = (parser_context or {}).get("encoding") or "utf-8"
        try:
            text = codecs.decode(stream.read(), encoding)
        except (UnicodeDecodeError, LookupError):
            raise ParseError(f"JSON parse error - the body is not {encoding}.") from None
        try:
            return loads(text)
        except JSONRefused as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
