"""Changing the runtime layer of the configuration. The API, the admin and the commands all come here.

Every write validates the whole resulting configuration (defaults + file + env +
the new runtime rows) before touching a row, inside one transaction that
serialises writers, so two concurrent changes cannot combine into an invalid tree.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection, transaction

from configuration import layers
from configuration.cache import CONFIG_CACHE, bump_shared_version
from configuration.choices import ConfigSource
from configuration.models import RuntimeSetting
from configuration.redaction import drop_redacted
from configuration.schema import ROOT, Path, PathError, dotted, flatten, leaf_at, nest, parse_path

# Key of the PostgreSQL advisory lock that serialises configuration writers. SQLite
# needs none: the project opens its transactions IMMEDIATE, which takes the write lock.
_WRITERS_LOCK = 0x15C_C0F1


@dataclass(frozen=True)
class ConfigChange:
    """What a write did, as dotted paths."""

    written: list[str]
    removed: list[str]


def config_update(*, changes: dict[str, Any], updated_by: str) -> dict[str, Any]:
    """Apply a nested partial document to the runtime layer and return the new effective tree.

    A null removes the runtime override at (and below) that path, reverting to env,
    file or default. Raises ValidationError({dotted path: [message]}) and writes
    nothing if any change, or the configuration it would produce, is invalid.
    """
    sets, removals = _parse_changes(changes)
    with transaction.atomic():
        _lock_writers()
        current = _current_rows()
        desired = _apply(current.values, sets, removals)
        resolved = _validated(desired)

        def touched(path: Path) -> bool:
            return any(path[: len(prefix)] == prefix for prefix in removals)

        change = _write(current, desired, touched=touched, updated_by=updated_by)
    if change.written or change.removed:
        _changed()
    return copy.deepcopy(resolved.tree)


def config_validate(*, changes: dict[str, Any]) -> dict[str, Any]:
    """What config_update would produce, without writing; raises the same ValidationError."""
    sets, removals = _parse_changes(changes)
    current = _current_rows()
    return copy.deepcopy(_validated(_apply(current.values, sets, removals)).tree)


def config_import(*, data: dict[str, Any], updated_by: str, replace: bool = False) -> ConfigChange:
    """Make the effective configuration match `data` (a full or partial document, e.g. an export).

    Only values that differ from env/file/defaults are stored, so importing a full
    export does not pin every key at runtime. Nulls and redacted secrets are
    skipped. `replace` also removes every runtime override `data` does not set.
    Everything is validated first; on error nothing is written.
    """
    if not isinstance(data, dict):
        raise ValidationError({ROOT: [f"the document must be an object, got {type(data).__name__}"]})
    values, errors = flatten(drop_redacted(data), skip_nulls=True)
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        _lock_writers()
        current = _current_rows()
        base = layers.validate_base()
        desired = {} if replace else dict(current.values)
        for path, value in values.items():
            if path in base.leaves and _same(base.leaves[path], value):
                desired.pop(path, None)
            else:
                desired[path] = value
        _validated(desired)
        change = _write(
            current,
            desired,
            touched=(lambda path: True) if replace else (lambda path: path in values),
            updated_by=updated_by,
            remove_unparseable=replace,
        )
    if change.written or change.removed:
        _changed()
    return change


def runtime_setting_set(*, path: str, value: Any, updated_by: str) -> RuntimeSetting:
    """Set one value at runtime (the admin form); same validation as config_update."""
    keys = _leaf_path(path)
    if value is None:
        raise ValidationError({dotted(keys): ["a value is required; delete the setting to revert to env/file/default"]})
    config_update(changes=nest({keys: value}), updated_by=updated_by)
    return RuntimeSetting.objects.get(path=dotted(keys))


def runtime_settings_remove(*, paths: Sequence[str], updated_by: str) -> ConfigChange:
    """Remove runtime overrides by their stored path, reverting to env/file/default.

    Rows whose path no longer names a setting are simply deleted; the rest go
    through config_update, so a removal that breaks a cross-field rule is refused.
    """
    parsed: dict[Path, str] = {}
    stray: list[str] = []
    for text in paths:
        try:
            parsed[parse_path(text)] = text
        except PathError:
            stray.append(text)
    with transaction.atomic():
        removed: list[str] = []
        if stray:
            RuntimeSetting.objects.filter(path__in=stray).delete()
            removed.extend(stray)
        if parsed:
            existing = set(RuntimeSetting.objects.filter(path__in=list(parsed.values())).values_list("path", flat=True))
            config_update(changes=nest(dict.fromkeys(parsed)), updated_by=updated_by)
            removed.extend(sorted(existing))
    if stray:
        _changed()
    return ConfigChange(written=[], removed=removed)


# --- Internals -------------------------------------------------------------------


@dataclass(frozen=True)
class _Rows:
    by_path: dict[Path, RuntimeSetting]  # every row whose path still names a setting
    values: dict[Path, Any]  # of those, the ones whose value is valid
    unparseable: list[RuntimeSetting]


def _parse_changes(changes: Any) -> tuple[dict[Path, Any], list[Path]]:
    if not isinstance(changes, dict):
        raise ValidationError({ROOT: [f"changes must be an object, got {type(changes).__name__}"]})
    removals: list[Path] = []
    sets, errors = flatten(changes, removals=removals)
    if errors:
        raise ValidationError(errors)
    return sets, removals


def _leaf_path(text: str) -> Path:
    try:
        keys = parse_path(text)
        leaf_at(keys)
    except PathError as exc:
        raise ValidationError({exc.path: [exc.reason]}) from None
    return keys


def _current_rows() -> _Rows:
    by_path: dict[Path, RuntimeSetting] = {}
    unparseable: list[RuntimeSetting] = []
    for row in RuntimeSetting.objects.all():
        try:
            by_path[parse_path(row.path)] = row
        except PathError:
            unparseable.append(row)
    values, _ = layers.runtime_layer((dotted(path), row.value) for path, row in by_path.items())
    return _Rows(by_path=by_path, values=values, unparseable=unparseable)


def _apply(current: Mapping[Path, Any], sets: Mapping[Path, Any], removals: Sequence[Path]) -> dict[Path, Any]:
    desired = {
        path: value for path, value in current.items() if not any(path[: len(prefix)] == prefix for prefix in removals)
    }
    desired.update(sets)
    return desired


def _validated(runtime: Mapping[Path, Any]) -> layers.Resolved:
    """Merge the new runtime layer over env/file/defaults and refuse it if a cross-field rule fails."""
    base = layers.base_layers()
    layers.validate_base(base)
    resolved, violations = layers.merge([*base, (ConfigSource.RUNTIME.value, runtime)])
    if violations:
        errors: dict[str, list[str]] = {}
        for _, problems in violations:
            for path, message in problems.items():
                errors.setdefault(path, []).append(message)
        raise ValidationError(errors)
    return resolved


def _write(
    current: _Rows,
    desired: Mapping[Path, Any],
    *,
    touched: Callable[[Path], bool],
    updated_by: str,
    remove_unparseable: bool = False,
) -> ConfigChange:
    """Make the rows match `desired` for every path in it or `touched`; leave the others alone."""
    doomed = [row for path, row in current.by_path.items() if path not in desired and touched(path)]
    if remove_unparseable:
        doomed.extend(current.unparseable)
    if doomed:
        RuntimeSetting.objects.filter(pk__in=[row.pk for row in doomed]).delete()
    written: list[str] = []
    for path, value in desired.items():
        row = current.by_path.get(path)
        unchanged = path in current.values and _same(current.values[path], value)
        if row is not None and unchanged and row.path == dotted(path):
            continue
        row = row or RuntimeSetting(path=dotted(path))
        row.path, row.value, row.updated_by = dotted(path), value, updated_by[:200]
        row.full_clean()
        row.save()
        written.append(row.path)
    return ConfigChange(written=written, removed=[row.path for row in doomed])


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def _lock_writers() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_WRITERS_LOCK])


def _changed() -> None:
    """Drop this process's copy now, and tell the others once the rows are committed."""
    CONFIG_CACHE.clear()

    def publish() -> None:
        bump_shared_version()
        CONFIG_CACHE.clear()

    transaction.on_commit(publish)
