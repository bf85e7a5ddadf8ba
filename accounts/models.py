"""API keys for the REST API and the gateway, stored only as hashes."""

from django.db import models
from rest_framework_api_key.models import AbstractAPIKey, BaseAPIKeyManager

from accounts.choices import Access


class ProjectAPIKey(AbstractAPIKey):
    access = models.CharField(max_length=16, choices=Access.choices, default=Access.FULL)

    objects: BaseAPIKeyManager = BaseAPIKeyManager()  # type: ignore[assignment,misc]

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "API key"
        verbose_name_plural = "API keys"
