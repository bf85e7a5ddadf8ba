from __future__ import annotations

from rest_framework import serializers

from ishchat.api import StrictFieldsMixin, offset_field
from monitoring.models import PerformanceReport
from monitoring.reports import FORMATS


class CleanupQuerySerializer(StrictFieldsMixin, serializers.Serializer):
    days_to_keep = serializers.IntegerField(
        min_value=1, max_value=3650, required=False, help_text="Default: monitoring.retention_days."
    )


class CleanupResultSerializer(serializers.Serializer):
    days_to_keep = serializers.IntegerField()
    cutoff = serializers.DateTimeField()
    request_logs = serializers.IntegerField()
    health_checks = serializers.IntegerField()
    instance_metrics = serializers.IntegerField()
    status_transitions = serializers.IntegerField()
    alerts = serializers.IntegerField()


class ReportSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = PerformanceReport
        fields = ["id", "window_start", "window_end", "generated_at", "trigger"]
        read_only_fields = fields


class ReportSerializer(serializers.ModelSerializer):
    body = serializers.JSONField(read_only=True)

    class Meta:
        model = PerformanceReport
        fields = ["id", "window_start", "window_end", "generated_at", "trigger", "body"]
        read_only_fields = fields


class ReportListQuerySerializer(StrictFieldsMixin, serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=1000, required=False, default=100)
    offset = offset_field()


class ReportDownloadQuerySerializer(StrictFieldsMixin, serializers.Serializer):
    format = serializers.ChoiceField(choices=FORMATS, required=False, default="json")
