"""Expiring leases: at most one holder per name across all processes.

A holder that dies simply lets the lease expire; `lease_release` only removes
a lease its caller still owns.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from ishchat.models import Lease


def lease_acquire(*, name: str, owner: str, ttl_seconds: float, now: datetime | None = None) -> bool:
    now = now or timezone.now()
    expires_at = now + timedelta(seconds=ttl_seconds)
    # Take over an expired lease (or renew our own) with one conditional UPDATE.
    taken = Lease.objects.filter(name=name, expires_at__lte=now).update(owner=owner, expires_at=expires_at)
    if taken:
        return True
    if Lease.objects.filter(name=name, owner=owner).update(expires_at=expires_at):
        return True
    try:
        with transaction.atomic():
            Lease.objects.create(name=name, owner=owner, expires_at=expires_at)
    except IntegrityError:
        return False
    return True


def lease_release(*, name: str, owner: str) -> None:
    Lease.objects.filter(name=name, owner=owner).delete()


@contextmanager
def lease(name: str, *, ttl_seconds: float) -> Iterator[bool]:
    """`with lease("health-sweep", ttl_seconds=120) as held:` — held is False when someone else has it."""
    owner = uuid.uuid4().hex
    held = lease_acquire(name=name, owner=owner, ttl_seconds=ttl_seconds)
    try:
        yield held
    finally:
        if held:
            lease_release(name=name, owner=owner)
