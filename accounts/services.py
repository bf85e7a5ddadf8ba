from __future__ import annotations

from datetime import datetime

from accounts.choices import Access
from accounts.models import ProjectAPIKey


def api_key_create(
    *, name: str, access: str = Access.FULL, expiry_date: datetime | None = None
) -> tuple[ProjectAPIKey, str]:
    """Create a key and return it with its plain text, which is shown once and never stored."""
    api_key = ProjectAPIKey(name=name, access=access, expiry_date=expiry_date)
    plain = ProjectAPIKey.objects.assign_key(api_key)
    api_key.full_clean()
    api_key.save()
    return api_key, plain


def api_key_revoke(*, api_key: ProjectAPIKey) -> ProjectAPIKey:
    api_key.revoked = True
    api_key.save(update_fields=["revoked"])
    return api_key
