"""Coordination primitives shared by every app."""

from django.db import models


class Lease(models.Model):
    """A named, expiring lock held by one owner (ishchat.locks): periodic jobs
    that must not overlap across workers take one. Works on SQLite and PostgreSQL
    alike, so the embedded default needs no Redis."""

    name = models.CharField(max_length=200, unique=True)
    owner = models.CharField(max_length=200)
    expires_at = models.DateTimeField()
    acquired_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name} held by {self.owner} until {self.expires_at:%H:%M:%S}"
