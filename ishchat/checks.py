"""Invariants of the deployment, as Django system checks."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Warning, register


@register()
def encryption_keys_check(app_configs: Any, **kwargs: Any) -> list[Error]:
    from ishchat.crypto import KeyConfigError, build_fernet

    if not settings.FIELD_ENCRYPTION_KEYS:
        return [
            Error(
                "FIELD_ENCRYPTION_KEY is not set: provider API keys cannot be stored.",
                hint="Generate one with `python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`.",
                id="ishchat.E001",
            )
        ]
    try:
        build_fernet(settings.FIELD_ENCRYPTION_KEYS)
    except KeyConfigError as exc:
        return [Error(str(exc), id="ishchat.E002")]
    return []


@register(deploy=True)
def backend_api_key_check(app_configs: Any, **kwargs: Any) -> list[Warning]:
    key = settings.BACKEND_API_KEY
    if key and len(key) < 24:
        return [Warning("BACKEND_API_KEY is shorter than 24 characters.", id="ishchat.W001")]
    return []


@register(deploy=True)
def https_check(app_configs: Any, **kwargs: Any) -> list[Warning]:
    if not settings.HTTPS:
        return [
            Warning(
                "INSTANCE_MANAGER_HTTPS is off: cookies and API keys travel in clear text.",
                hint="Set INSTANCE_MANAGER_HTTPS=true behind a TLS-terminating proxy.",
                id="ishchat.W002",
            )
        ]
    return []


@register()
def database_pool_check(app_configs: Any, **kwargs: Any) -> list[Error]:
    pool = settings.DATABASES["default"].get("OPTIONS", {}).get("pool")
    if isinstance(pool, dict) and pool.get("min_size", 0) > pool.get("max_size", pool.get("min_size", 0)):
        return [
            Error(
                f"INSTANCE_MANAGER_DB_POOL_MIN_SIZE ({pool['min_size']}) is larger than "
                f"INSTANCE_MANAGER_DB_POOL_MAX_SIZE ({pool['max_size']}).",
                hint="The pool opens min_size connections and never more than max_size.",
                id="ishchat.E003",
            )
        ]
    return []
