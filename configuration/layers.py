"""The four layers of configuration and how they combine: runtime > env > file > defaults.

Each layer is a flat {path: cleaned value}. Reading the file and the
environment fails loudly (ImproperlyConfigured naming the file or the variable
and the bad path); runtime rows that no longer validate are set aside and
reported instead, so a schema change cannot take the service down.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import yaml
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from configuration.choices import ConfigSource
from configuration.schema import (
    RULES,
    Compare,
    Errors,
    Path,
    PathError,
    Section,
    build_tree,
    default_leaves,
    dotted,
    flatten,
    iter_leaves,
    iter_maps,
    leaf_at,
    ordered_paths,
    parse_path,
    walk,
)

logger = logging.getLogger(__name__)

Layer = tuple[str, Mapping[Path, Any]]

ENV_PREFIX = "INSTANCE_MANAGER_"
# The seed's flat variables feed the same keys as their nested spelling, which wins.
ENV_SHORTCUTS: dict[str, Path] = {
    "INSTANCE_MANAGER_DEBUG": ("global", "instance_manager", "debug"),
    "INSTANCE_MANAGER_LOG_LEVEL": ("global", "instance_manager", "log_level"),
}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Resolved:
    """The merged configuration: leaves and their sources, and the nested tree built from them."""

    leaves: dict[Path, Any]
    leaf_sources: dict[Path, str]
    tree: dict[str, Any]
    sources: dict[str, str]
    # Runtime rows that were not applied: dotted path -> why.
    ignored: dict[str, str] = field(default_factory=dict)


# --- File ----------------------------------------------------------------------


class DocumentError(ValueError):
    """A configuration document that cannot be read or parsed; the message names the file."""


def config_file_path() -> pathlib.Path:
    """settings.CONFIG_FILE, relative paths taken from the project root rather than the working directory."""
    path = pathlib.Path(settings.CONFIG_FILE)
    return path if path.is_absolute() else pathlib.Path(settings.BASE_DIR) / path


def load_document(path: pathlib.Path) -> dict[str, Any]:
    """A JSON or YAML document (by extension) whose top level is an object."""
    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        raise DocumentError(f"{path}: unsupported file type {suffix or '(none)'!r}; use .json, .yaml or .yml")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DocumentError(f"{path}: cannot be read: {exc}") from None
    if suffix == ".json":
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DocumentError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    else:
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise DocumentError(f"{path}: invalid YAML: {exc}") from None
        if document is None:  # an empty YAML file
            document = {}
    if not isinstance(document, dict):
        raise DocumentError(f"{path}: the top level must be an object, got {type(document).__name__}")
    return document


_file_cache: dict[str, tuple[tuple[int, int], dict[Path, Any]]] = {}
_missing_reported: set[str] = set()


def file_layer() -> dict[Path, Any]:
    """The configuration file's values, re-parsed only when its size or mtime changes."""
    path = config_file_path()
    try:
        stat = path.stat()
    except FileNotFoundError:
        if str(path) not in _missing_reported:
            _missing_reported.add(str(path))
            logger.warning("Configuration file %s not found; using environment and built-in defaults", path)
        return {}
    stamp = (stat.st_mtime_ns, stat.st_size)
    cached = _file_cache.get(str(path))
    if cached is not None and cached[0] == stamp:
        return cached[1]
    try:
        document = load_document(path)
    except DocumentError as exc:
        raise ImproperlyConfigured(f"Invalid configuration file {exc}") from None
    leaves, errors = flatten(document)
    if errors:
        raise ImproperlyConfigured(f"Invalid configuration file {path}:\n{format_errors(errors)}")
    _file_cache[str(path)] = (stamp, leaves)
    return leaves


def clear_file_cache() -> None:
    _file_cache.clear()
    _missing_reported.clear()


# --- Environment ---------------------------------------------------------------


def env_path(name: str) -> Path | None:
    """INSTANCE_MANAGER_A__B_C__D -> ("a", "b_c", "d"); None for variables that are not configuration."""
    if not name.startswith(ENV_PREFIX) or "__" not in name[len(ENV_PREFIX) :]:
        return None
    return tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))


def parse_env_value(raw: str) -> Any:
    """JSON when it parses (numbers, true/false, null, lists, objects), otherwise the string itself."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def env_layer(environ: Mapping[str, str] | None = None) -> dict[Path, Any]:
    environ = os.environ if environ is None else environ
    leaves: dict[Path, Any] = {}
    problems: list[str] = []

    for name, path in ENV_SHORTCUTS.items():
        raw = environ.get(name, "").strip()
        if not raw:
            continue
        value: Any = raw.upper()
        if isinstance(leaf_at(path).default, bool):
            value = True if raw.lower() in _TRUE else False if raw.lower() in _FALSE else raw
        try:
            leaves[path] = leaf_at(path).clean(value)
        except ValueError as exc:
            problems.append(f"{name}: {dotted(path)}: {exc}")

    # Shorter paths first, so INSTANCE_MANAGER_X__Y='{"z": 1}' yields to INSTANCE_MANAGER_X__Y__Z.
    named = [(keys, name) for name in environ if (keys := env_path(name)) is not None]
    for keys, name in sorted(named, key=lambda entry: (len(entry[0]), entry[0])):
        if not all(keys):
            problems.append(f"{name}: empty key in the name (four underscores in a row?)")
            continue
        try:
            node = walk(keys)
        except PathError as exc:
            problems.append(f"{name}: {exc}")
            continue
        values, errors = flatten(parse_env_value(environ[name]), node=node, prefix=keys)
        problems.extend(f"{name}: {where}: {message}" for where, messages in errors.items() for message in messages)
        leaves.update(values)

    if problems:
        raise ImproperlyConfigured(
            "Invalid configuration in the environment:\n" + "\n".join(f"  {line}" for line in problems)
        )
    return leaves


# --- Runtime -------------------------------------------------------------------


def runtime_layer(rows: Iterable[tuple[str, Any]]) -> tuple[dict[Path, Any], dict[str, str]]:
    """RuntimeSetting (path, value) pairs -> (valid leaves, {path: why ignored})."""
    leaves: dict[Path, Any] = {}
    ignored: dict[str, str] = {}
    for text, value in rows:
        try:
            path = parse_path(text)
            leaves[path] = leaf_at(path).clean(value)
        except PathError as exc:
            ignored[text] = exc.reason
        except ValueError as exc:
            ignored[text] = str(exc)
    return leaves, ignored


# --- Merging -------------------------------------------------------------------


def merge(layers: Sequence[Layer]) -> tuple[Resolved, list[tuple[Compare, dict[str, str]]]]:
    """Overlay the layers in order (later wins) and check the cross-field rules.

    1. Every leaf takes the value of the last layer that sets it.
    2. An entry of a map of sections (pricing.<model>) gets defaults for the keys no layer sets.
    3. A null leaf with `default_from` takes that path's value and source.
    4. RULES run on the result; violations are returned, not raised.
    """
    leaves: dict[Path, Any] = {}
    sources: dict[Path, str] = {}
    for source, values in layers:
        for path, value in values.items():
            leaves[path] = value
            sources[path] = source

    for map_path, map_node in iter_maps():
        if not isinstance(map_node.value, Section):
            continue
        depth = len(map_path)
        keys = {path[depth] for path in list(leaves) if len(path) > depth and path[:depth] == map_path}
        for key in keys:
            for sub_path, leaf in iter_leaves(map_node.value, (*map_path, key)):
                if sub_path not in leaves:
                    leaves[sub_path], sources[sub_path] = leaf.default, ConfigSource.DEFAULT.value

    for path, leaf in iter_leaves():
        if leaf.default_from and leaves.get(path) is None:
            origin = parse_path(leaf.default_from)
            leaves[path], sources[path] = leaves[origin], sources[origin]

    violations = [(rule, problems) for rule in RULES if (problems := rule.check(lambda p: leaves[parse_path(p)]))]
    ordered = list(ordered_paths(leaves))
    resolved = Resolved(
        leaves={path: leaves[path] for path in ordered if path in leaves},
        leaf_sources={path: sources[path] for path in ordered if path in leaves},
        tree=build_tree(leaves),
        sources={dotted(path): sources.get(path, ConfigSource.DEFAULT.value) for path in ordered},
    )
    return resolved, violations


def base_layers() -> list[Layer]:
    """Defaults, file and environment: everything but the database. Raises ImproperlyConfigured."""
    return [
        (ConfigSource.DEFAULT.value, default_leaves()),
        (ConfigSource.FILE.value, file_layer()),
        (ConfigSource.ENV.value, env_layer()),
    ]


def validate_base(layers: Sequence[Layer] | None = None) -> Resolved:
    """The merged defaults, file and environment, or ImproperlyConfigured saying what conflicts."""
    resolved, violations = merge(base_layers() if layers is None else layers)
    if violations:
        lines: list[str] = []
        for rule, problems in violations:
            origins = ", ".join(f"{p} from {resolved.sources[p]}" for p in rule.paths)
            lines.extend(f"  {path}: {message} ({origins})" for path, message in problems.items())
        raise ImproperlyConfigured(
            f"Invalid configuration (file {config_file_path()} and environment):\n" + "\n".join(lines)
        )
    return resolved


def resolve(runtime: Mapping[Path, Any], ignored: Mapping[str, str] | None = None) -> Resolved:
    """All four layers. Runtime values that break a cross-field rule against a changed file or
    environment are set aside (and reported in `ignored`) rather than failing every read."""
    base = base_layers()
    base_resolved = validate_base(base)
    ignored = dict(ignored or {})
    if not runtime:
        return replace(base_resolved, ignored=ignored)
    resolved, violations = merge([*base, (ConfigSource.RUNTIME.value, runtime)])
    if violations:
        kept = dict(runtime)
        for rule, problems in violations:
            reason = "; ".join(f"{path}: {message}" for path, message in problems.items())
            for path in {parse_path(p) for p in rule.paths} & set(runtime):
                ignored[dotted(path)] = f"conflicts with the file or environment: {reason}"
                kept.pop(path, None)
        resolved, _ = merge([*base, (ConfigSource.RUNTIME.value, kept)])
    return replace(resolved, ignored=ignored)


def format_errors(errors: Errors) -> str:
    return "\n".join(f"  {path}: {message}" for path, messages in errors.items() for message in messages)
