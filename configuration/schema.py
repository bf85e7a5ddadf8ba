"""The configuration tree in one declarative table: every key, its type, range and default.

A later feature adds its keys by adding rows to SCHEMA (and, when two keys
constrain each other, a row to RULES). Validation, defaults, the source of each
value, the OpenAPI schema and the admin all follow from the table.

Paths are tuples of keys; their dotted form ("load_balancer.strategy") is what
people, the API and RuntimeSetting rows use. Map keys (a model name such as
"gpt-4.1") may contain dots, so dotted paths are parsed against the schema.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar
from urllib.parse import urlsplit

from instances.choices import ProviderType, Strategy

Path = tuple[str, ...]
Errors = dict[str, list[str]]

ROOT = "non_field_errors"  # error key for problems with the document itself
LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


def dotted(path: Path) -> str:
    return ".".join(path) if path else ROOT


def show(value: Any) -> str:
    """A value as it appears in an error message: JSON-like, strings quoted."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def add_error(errors: Errors, path: Path, message: str) -> None:
    errors.setdefault(dotted(path), []).append(message)


# --- Node types --------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Leaf:
    """One value. `clean` returns the normalised value or raises ValueError with the message."""

    default: Any
    help: str = ""
    nullable: bool = False
    # When the value is null (unset), it takes the effective value at this dotted path.
    default_from: str | None = None

    expected: ClassVar[str] = "a value"

    def clean(self, value: Any) -> Any:
        if value is None:
            if self.nullable:
                return None
            raise ValueError(f"must be {self.expected}, got null")
        return self._clean(value)

    def _clean(self, value: Any) -> Any:
        return value

    def json_schema(self) -> dict[str, Any]:
        schema = self._json_schema()
        if self.help:
            schema["description"] = self.help
        if self.nullable:
            schema["nullable"] = True
        return schema

    def _json_schema(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True, kw_only=True)
class Bool(Leaf):
    expected: ClassVar[str] = "true or false"

    def _clean(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ValueError(f"must be true or false, got {show(value)}")
        return value

    def _json_schema(self) -> dict[str, Any]:
        return {"type": "boolean"}


@dataclass(frozen=True, kw_only=True)
class Int(Leaf):
    ge: int | None = None
    le: int | None = None
    expected: ClassVar[str] = "an integer"

    def _clean(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be an integer, got {show(value)}")
        _check_range(value, ge=self.ge, le=self.le)
        return value

    def _json_schema(self) -> dict[str, Any]:
        return _range_schema({"type": "integer"}, ge=self.ge, le=self.le)


@dataclass(frozen=True, kw_only=True)
class Float(Leaf):
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    expected: ClassVar[str] = "a number"

    def _clean(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"must be a number, got {show(value)}")
        _check_range(value, ge=self.ge, gt=self.gt, le=self.le)
        return float(value)

    def _json_schema(self) -> dict[str, Any]:
        return _range_schema({"type": "number"}, ge=self.ge, gt=self.gt, le=self.le)


@dataclass(frozen=True, kw_only=True)
class Choice(Leaf):
    choices: tuple[str, ...]
    expected: ClassVar[str] = "one of the choices"

    def _clean(self, value: Any) -> str:
        if not isinstance(value, str) or value not in self.choices:
            raise ValueError(f"must be one of {list(self.choices)}, got {show(value)}")
        return value

    def _json_schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": [*self.choices, *([None] if self.nullable else [])]}


@dataclass(frozen=True, kw_only=True)
class Url(Leaf):
    expected: ClassVar[str] = "an http(s) URL"

    def _clean(self, value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"must be an http(s) URL, got {show(value)}")
        try:
            parts = urlsplit(value)
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http(s) URL, got {show(value)}")
        return value

    def _json_schema(self) -> dict[str, Any]:
        return {"type": "string", "format": "uri", "pattern": "^https?://"}


@dataclass(frozen=True, kw_only=True)
class StrList(Leaf):
    """A list of distinct non-empty strings, replaced as a whole by each layer."""

    min_items: int = 0
    expected: ClassVar[str] = "a list of strings"

    def _clean(self, value: Any) -> list[str]:
        if not isinstance(value, list):
            raise ValueError(f"must be a list of strings, got {show(value)}")
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise ValueError(f"item {index} must be a non-empty string, got {show(item)}")
        if len(set(value)) != len(value):
            raise ValueError("must not repeat an item")
        if len(value) < self.min_items:
            raise ValueError(f"must have at least {self.min_items} item(s)")
        return list(value)

    def _json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "array", "items": {"type": "string", "minLength": 1}, "uniqueItems": True}
        if self.min_items:
            schema["minItems"] = self.min_items
        return schema


@dataclass(frozen=True)
class Section:
    """A fixed set of keys; any other key is an error (typos must not pass silently)."""

    fields: dict[str, Node]
    help: str = ""


@dataclass(frozen=True)
class MapOf:
    """Free keys (model names, aliases), each holding a `value` node; empty by default."""

    value: Node
    help: str = ""
    key_help: str = "1-100 characters, no spaces"

    _KEY = re.compile(r"^[^\s]{1,100}$")

    def check_key(self, key: Any) -> None:
        if not isinstance(key, str) or not self._KEY.match(key):
            raise ValueError(f"key {show(key)} is not valid: {self.key_help}")


Node = Leaf | Section | MapOf


def _check_range(value: float, *, ge: float | None = None, gt: float | None = None, le: float | None = None) -> None:
    if ge is not None and le is not None and not ge <= value <= le:
        raise ValueError(f"must be between {ge} and {le}, got {show(value)}")
    if gt is not None and le is not None and not gt < value <= le:
        raise ValueError(f"must be greater than {gt} and at most {le}, got {show(value)}")
    if ge is not None and value < ge:
        raise ValueError(f"must be >= {ge}, got {show(value)}")
    if gt is not None and value <= gt:
        raise ValueError(f"must be > {gt}, got {show(value)}")
    if le is not None and value > le:
        raise ValueError(f"must be <= {le}, got {show(value)}")


def _range_schema(
    schema: dict[str, Any], *, ge: float | None = None, gt: float | None = None, le: float | None = None
) -> dict[str, Any]:
    if ge is not None:
        schema["minimum"] = ge
    if gt is not None:
        schema["minimum"] = gt
        schema["exclusiveMinimum"] = True
    if le is not None:
        schema["maximum"] = le
    return schema


# --- The table ---------------------------------------------------------------

DAY = 86_400


def seconds(default: int, help: str = "") -> Int:
    """An interval or duration: 1 s to a day."""
    return Int(default=default, ge=1, le=DAY, help=help)


def cooldown(default: int) -> Int:
    """A wait that may be zero: 0 s to a day."""
    return Int(default=default, ge=0, le=DAY)


def share(default: float) -> Float:
    """A fraction of capacity, above zero and at most one."""
    return Float(default=default, gt=0.0, le=1.0)


PROVIDER_BASE_URLS: dict[str, str | None] = {
    ProviderType.ZAI.value: "https://open.bigmodel.cn/api/paas/v4",
    ProviderType.OPENAI.value: "https://api.openai.com/v1",
    ProviderType.ANTHROPIC.value: "https://api.anthropic.com/v1",
    ProviderType.PERPLEXITY.value: "https://api.perplexity.ai",
    ProviderType.OPENAI_COMPATIBLE.value: None,
}


def provider_section(base_url: str | None) -> Section:
    return Section(
        {
            "enabled": Bool(default=True, help="Route to and check this provider's instances."),
            "default_models": StrList(default=[], help="Models offered when an instance names none."),
            "base_url": Url(default=base_url, nullable=True, help="The provider's public API base URL."),
            "health_check_interval": Int(
                default=None,
                nullable=True,
                default_from="load_balancer.health_check_interval",
                help="Seconds between basic checks; null: load_balancer.health_check_interval.",
                ge=1,
                le=DAY,
            ),
            "rate_limits": Section(
                {
                    "requests_per_minute": Int(default=None, nullable=True, ge=1, help="Null: unlimited."),
                    "tokens_per_minute": Int(default=None, nullable=True, ge=1, help="Null: unlimited."),
                    "requests_burst": Int(
                        default=None,
                        nullable=True,
                        ge=1,
                        help="Requests admitted at once from idle, then one each minute/limit; "
                        "null: max(1, ceil(requests_per_minute / 10)).",
                    ),
                }
            ),
        }
    )


SCHEMA = Section(
    {
        "global": Section(
            {
                "instance_manager": Section(
                    {
                        "debug": Bool(default=False),
                        "log_level": Choice(default="INFO", choices=tuple(LOG_LEVELS)),
                        "max_concurrent_health_checks": Int(
                            default=10, ge=1, le=1000, help="Checks in flight at once during a sweep."
                        ),
                    }
                )
            }
        ),
        "providers": Section({name: provider_section(url) for name, url in PROVIDER_BASE_URLS.items()}),
        "load_balancer": Section(
            {
                "strategy": Choice(default=Strategy.HEALTH_BASED.value, choices=tuple(Strategy.values)),
                "health_check_interval": seconds(30, "Seconds between basic health checks."),
                "failover_enabled": Bool(default=True),
                "max_failover_attempts": Int(default=3, ge=0, le=10),
                "max_stream_seconds": seconds(
                    600, "Longest a streamed reply may run before the gateway cuts it; an instance's own overrides it."
                ),
                "healthy_threshold": Int(default=2, ge=1, le=100, help="Consecutive good checks to become healthy."),
                "unhealthy_threshold": Int(default=3, ge=1, le=100, help="Consecutive bad checks to go unhealthy."),
                "min_health_score": Float(default=0.0, ge=0.0, le=1.0),
                "session_affinity": Bool(default=True),
                "session_ttl_seconds": Int(default=3600, ge=1, le=30 * DAY),
                "lease_ttl_seconds": Int(
                    default=15,
                    ge=1,
                    le=3600,
                    help="Seconds a reported load (PUT .../load) and a select-instance lease count unless renewed.",
                ),
                "breaker": Section(
                    {
                        "failure_threshold": Int(default=5, ge=1, le=1000, help="Consecutive failures that open it."),
                        "failure_rate": Float(default=0.5, ge=0.01, le=1.0, help="Failure share that opens it."),
                        "min_calls": Int(default=10, ge=1, le=100_000, help="Calls before the rate counts."),
                        "open_seconds": seconds(30),
                        "max_open_seconds": seconds(300),
                        "half_open_probes": Int(default=3, ge=1, le=100),
                        "max_ejection_share": Float(default=0.5, ge=0.0, le=1.0, help="Largest pool share ejected."),
                    }
                ),
                "model_aliases": MapOf(
                    StrList(default=[], min_items=1),
                    help="Alias -> ordered list of models to try.",
                ),
            }
        ),
        "health_checks": Section(
            {
                "jitter_seconds": Int(default=5, ge=0, le=3600),
                "latency_interval": seconds(300),
                "load_interval": seconds(60),
                "comprehensive_interval": seconds(900),
                "latency_samples": Int(default=3, ge=1, le=20),
            }
        ),
        "auto_scaling": Section(
            {
                "enabled": Bool(default=True),
                "min_instances": Int(default=1, ge=0, le=10_000),
                "max_instances": Int(default=10, ge=1, le=10_000),
                "scale_up_threshold": share(0.8),
                "scale_down_threshold": share(0.54),
                "scale_up_cooldown": cooldown(0),
                "scale_down_cooldown": cooldown(600),
                "scale_down_stabilization_seconds": cooldown(300),
                "evaluation_interval": seconds(30),
                "manual_pause_seconds": cooldown(900),
            }
        ),
        "monitoring": Section(
            {
                "enabled": Bool(default=True),
                "metrics_collection_interval": seconds(60),
                "alert_thresholds": Section(
                    {
                        "response_time_warning": Int(default=2000, ge=1, le=600_000, help="Milliseconds."),
                        "response_time_critical": Int(default=5000, ge=1, le=600_000, help="Milliseconds."),
                        "error_rate_warning": Float(default=5.0, ge=0.0, le=100.0, help="Percent of requests."),
                        "error_rate_critical": Float(default=10.0, ge=0.0, le=100.0, help="Percent of requests."),
                    }
                ),
                "retention_days": Int(default=30, ge=1, le=3650),
            }
        ),
        "pricing": MapOf(
            Section(
                {
                    "input_per_1k": Float(default=0.0, ge=0.0, help="Price of 1,000 prompt tokens."),
                    "output_per_1k": Float(default=0.0, ge=0.0, help="Price of 1,000 completion tokens."),
                }
            ),
            help="Model name -> price per 1,000 tokens, for cost estimates.",
        ),
    }
)


# --- Cross-field rules ---------------------------------------------------------

_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {">=": operator.ge, ">": operator.gt}


@dataclass(frozen=True)
class Compare:
    """`left op right` between two effective values; the error is reported on `left`."""

    left: str
    op: str
    right: str

    @property
    def paths(self) -> tuple[str, str]:
        return (self.left, self.right)

    def check(self, value_of: Callable[[str], Any]) -> dict[str, str]:
        left, right = value_of(self.left), value_of(self.right)
        if left is None or right is None or _OPERATORS[self.op](left, right):
            return {}
        return {self.left: f"must be {self.op} {self.right} ({show(right)}), got {show(left)}"}


RULES: list[Compare] = [
    Compare("auto_scaling.max_instances", ">=", "auto_scaling.min_instances"),
    Compare("auto_scaling.scale_up_threshold", ">", "auto_scaling.scale_down_threshold"),
    Compare("load_balancer.breaker.max_open_seconds", ">=", "load_balancer.breaker.open_seconds"),
    *(
        Compare(f"monitoring.alert_thresholds.{name}_critical", ">=", f"monitoring.alert_thresholds.{name}_warning")
        for name in ("response_time", "error_rate")
    ),
]


# --- Walking the table ---------------------------------------------------------


class PathError(ValueError):
    """A path that names no key of the schema; `path` is where it went wrong."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def _unknown_key(section: Section, key: str) -> str:
    return f"unknown key {key!r}; expected one of: {', '.join(section.fields)}"


def walk(path: Sequence[str], node: Node = SCHEMA) -> Node:
    """The node at `path`, one key per element (map keys included)."""
    for depth, key in enumerate(path):
        if isinstance(node, Section):
            if key not in node.fields:
                raise PathError(dotted(tuple(path[: depth + 1])), _unknown_key(node, key))
            node = node.fields[key]
        elif isinstance(node, MapOf):
            try:
                node.check_key(key)
            except ValueError as exc:
                raise PathError(dotted(tuple(path[:depth])), str(exc)) from None
            node = node.value
        else:
            raise PathError(dotted(tuple(path[:depth])), f"is a single value and has no key {key!r}")
    return node


@lru_cache(maxsize=2048)
def parse_path(text: str) -> Path:
    """Split a dotted path, letting a map key take as many dotted parts as it needs.

    Within a map, the shortest key after which the rest of the path resolves wins:
    "pricing.gpt-4.1.input_per_1k" -> ("pricing", "gpt-4.1", "input_per_1k").
    """
    if not isinstance(text, str) or not text.strip():
        raise PathError(ROOT, "a configuration path must be a non-empty dotted string")
    parts = text.strip().split(".")
    return _parse(parts, SCHEMA, ())


def _parse(parts: list[str], node: Node, done: Path) -> Path:
    if not parts:
        return done
    if isinstance(node, Section):
        key = parts[0]
        if key not in node.fields:
            raise PathError(dotted((*done, key)), _unknown_key(node, key))
        return _parse(parts[1:], node.fields[key], (*done, key))
    if isinstance(node, MapOf):
        last_error: PathError | None = None
        for cut in range(1, len(parts) + 1):
            key = ".".join(parts[:cut])
            try:
                node.check_key(key)
                return _parse(parts[cut:], node.value, (*done, key))
            except PathError as exc:
                last_error = exc
            except ValueError as exc:
                last_error = PathError(dotted(done), str(exc))
        assert last_error is not None
        raise last_error
    raise PathError(dotted(done), f"is a single value and has no key {parts[0]!r}")


def iter_leaves(node: Node = SCHEMA, prefix: Path = ()) -> Iterator[tuple[Path, Leaf]]:
    """Every leaf under the sections of `node`, in table order; maps contribute none."""
    if isinstance(node, Section):
        for key, child in node.fields.items():
            yield from iter_leaves(child, (*prefix, key))
    elif isinstance(node, Leaf):
        yield prefix, node


def iter_maps(node: Node = SCHEMA, prefix: Path = ()) -> Iterator[tuple[Path, MapOf]]:
    if isinstance(node, Section):
        for key, child in node.fields.items():
            yield from iter_maps(child, (*prefix, key))
    elif isinstance(node, MapOf):
        yield prefix, node


def leaf_at(path: Path) -> Leaf:
    node = walk(path)
    if not isinstance(node, Leaf):
        raise PathError(dotted(path), "is a group of settings, not a single value")
    return node


def default_leaves() -> dict[Path, Any]:
    return {path: leaf.default for path, leaf in iter_leaves()}


def flatten(
    value: Any,
    *,
    node: Node = SCHEMA,
    prefix: Path = (),
    removals: list[Path] | None = None,
    skip_nulls: bool = False,
) -> tuple[dict[Path, Any], Errors]:
    """Turn a nested (partial) document into {leaf path: cleaned value}, collecting every error.

    With `removals`, a null anywhere means "remove what is set at or below this
    path" and is appended there (the runtime layer's PATCH semantics); with
    `skip_nulls`, nulls are ignored; otherwise a null is a value for the leaf.
    """
    leaves: dict[Path, Any] = {}
    errors: Errors = {}
    _flatten(value, node, prefix, leaves, errors, removals, skip_nulls)
    return leaves, errors


def _flatten(
    value: Any,
    node: Node,
    prefix: Path,
    leaves: dict[Path, Any],
    errors: Errors,
    removals: list[Path] | None,
    skip_nulls: bool,
) -> None:
    if value is None and removals is not None:
        removals.append(prefix)
        return
    if value is None and skip_nulls:
        return
    if isinstance(node, Leaf):
        try:
            leaves[prefix] = node.clean(value)
        except ValueError as exc:
            add_error(errors, prefix, str(exc))
        return
    if not isinstance(value, dict):
        add_error(errors, prefix, f"must be an object, got {show(value)}")
        return
    for key, child_value in value.items():
        if isinstance(node, Section):
            if key not in node.fields:
                add_error(errors, (*prefix, str(key)), _unknown_key(node, str(key)))
                continue
            child = node.fields[key]
        else:
            try:
                node.check_key(key)
            except ValueError as exc:
                add_error(errors, prefix, str(exc))
                continue
            child = node.value
        _flatten(child_value, child, (*prefix, key), leaves, errors, removals, skip_nulls)


def nest(values: Mapping[Path, Any]) -> dict[str, Any]:
    """The nested document for {path: value}; the inverse of `flatten`."""
    tree: dict[str, Any] = {}
    for path, value in values.items():
        branch = tree
        for key in path[:-1]:
            branch = branch.setdefault(key, {})
        branch[path[-1]] = value
    return tree


def build_tree(leaves: Mapping[Path, Any], node: Node = SCHEMA, prefix: Path = ()) -> Any:
    """The nested document for a complete set of leaves, keys in table order, maps as present."""
    if isinstance(node, Leaf):
        return leaves[prefix]
    if isinstance(node, Section):
        return {key: build_tree(leaves, child, (*prefix, key)) for key, child in node.fields.items()}
    return {key: build_tree(leaves, node.value, (*prefix, key)) for key in _map_keys(leaves, prefix)}


def ordered_paths(leaves: Mapping[Path, Any], node: Node = SCHEMA, prefix: Path = ()) -> Iterator[Path]:
    """The paths of `leaves` in table order; an empty map yields its own path (it has no leaves)."""
    if isinstance(node, Leaf):
        yield prefix
    elif isinstance(node, Section):
        for key, child in node.fields.items():
            yield from ordered_paths(leaves, child, (*prefix, key))
    else:
        keys = _map_keys(leaves, prefix)
        if not keys:
            yield prefix
        for key in keys:
            yield from ordered_paths(leaves, node.value, (*prefix, key))


def _map_keys(leaves: Mapping[Path, Any], prefix: Path) -> list[str]:
    depth = len(prefix)
    return list(dict.fromkeys(path[depth] for path in leaves if len(path) > depth and path[:depth] == prefix))


def json_schema(node: Node = SCHEMA, *, partial: bool = False) -> dict[str, Any]:
    """OpenAPI 3.0 schema of the document; `partial` for PATCH bodies (all optional, null removes)."""
    if isinstance(node, Leaf):
        schema = node.json_schema()
    elif isinstance(node, Section):
        schema = {
            "type": "object",
            "properties": {key: json_schema(child, partial=partial) for key, child in node.fields.items()},
            "additionalProperties": False,
        }
        if not partial:
            schema["required"] = list(node.fields)
    else:
        schema = {"type": "object", "additionalProperties": json_schema(node.value, partial=partial)}
    if isinstance(node, Section | MapOf) and node.help:
        schema["description"] = node.help
    if partial:
        schema["nullable"] = True
        if "enum" in schema and None not in schema["enum"]:
            schema["enum"] = [*schema["enum"], None]
    return schema
