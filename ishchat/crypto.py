"""Encryption at rest for provider API keys (MultiFernet over FIELD_ENCRYPTION_KEY).

The first key encrypts; every key decrypts, so a new key can be put first and
`manage.py rotate_encryption_key` re-encrypts the stored tokens with it.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class KeyConfigError(ValueError):
    pass


class DecryptionError(ValueError):
    pass


def build_fernet(keys: list[str] | tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise KeyConfigError("FIELD_ENCRYPTION_KEY is not set.")
    fernets = []
    for position, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key.encode()))
        except (ValueError, TypeError):
            raise KeyConfigError(
                f"FIELD_ENCRYPTION_KEY entry {position} is not a Fernet key (32 url-safe base64-encoded bytes)."
            ) from None
    return MultiFernet(fernets)


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return build_fernet(keys)


def _current() -> MultiFernet:
    return _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS))


def encrypt(plain: str) -> str:
    return _current().encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _current().decrypt(token.encode()).decode()
    except InvalidToken:
        raise DecryptionError("Stored secret cannot be decrypted with any FIELD_ENCRYPTION_KEY.") from None


def rotate(token: str) -> str:
    """Re-encrypt `token` with the first key."""
    try:
        return _current().rotate(token.encode()).decode()
    except InvalidToken:
        raise DecryptionError("Stored secret cannot be decrypted with any FIELD_ENCRYPTION_KEY.") from None
