"""Stored performance reports, and the counts retention took away from the counters."""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class PerformanceReport(models.Model):
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    generated_at = models.DateTimeField()
    trigger = models.CharField(max_length=16, default="scheduled", help_text="scheduled, command, api")
    body = models.JSONField(help_text="The report as monitoring.reports.build_report returns it.")

    class Meta:
        ordering = ["-generated_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(window_end__gt=models.F("window_start")), name="report_window_ordered"),
        ]
        indexes = [
            # GET /api/reports: newest first.
            models.Index(fields=["-generated_at"], name="report_recent_idx"),
        ]

    def __str__(self) -> str:
        return f"report {self.window_start:%Y-%m-%d %H:%M} - {self.window_end:%Y-%m-%d %H:%M}"


class MetricBaseline(models.Model):
    """What retention deleted, per Prometheus sample: counters add it back so they never go down.

    `labels` is the canonical JSON of the sample's sorted label pairs (monitoring.metrics.labels_key).
    """

    sample = models.CharField(max_length=200)
    labels = models.CharField(max_length=1000)
    value = models.FloatField(default=0.0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["sample", "labels"]
        constraints = [
            # Also the lookup index when retention adds to a sample.
            models.UniqueConstraint(fields=["sample", "labels"], name="unique_metric_baseline"),
        ]

    def __str__(self) -> str:
        return f"{self.sample}{self.labels} = {self.value}"
