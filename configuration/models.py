"""Runtime configuration changes, the top layer over env, file and defaults."""

from django.db import models


class RuntimeSetting(models.Model):
    """One dotted configuration path set at runtime (admin or PATCH /api/config)."""

    path = models.CharField(max_length=200, unique=True, help_text="Dotted path, e.g. load_balancer.strategy")
    value = models.JSONField()
    updated_by = models.CharField(max_length=200, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["path"]

    def __str__(self) -> str:
        return self.path
