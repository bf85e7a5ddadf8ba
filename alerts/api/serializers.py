from __future__ import annotations

from rest_framework import serializers

from alerts.choices import AlertRule, AlertSeverity, AlertStatus
from alerts.models import Alert
from ishchat.api import StrictFieldsMixin, offset_field


class AlertSerializer(serializers.ModelSerializer):
    """An alert as the API shows it; instance and group by public id and name."""

    instance_id = serializers.UUIDField(source="instance.instance_id", allow_null=True, read_only=True, default=None)
    instance_name = serializers.CharField(
        source="instance.instance_name", allow_null=True, read_only=True, default=None
    )
    group_id = serializers.IntegerField(source="group.id", allow_null=True, read_only=True, default=None)
    group_name = serializers.CharField(source="group.group_name", allow_null=True, read_only=True, default=None)
    details = serializers.JSONField(read_only=True)

    class Meta:
        model = Alert
        fields = [
            "id",
            "rule",
            "severity",
            "status",
            "dedup_key",
            "title",
            "message",
            "details",
            "value",
            "threshold",
            "instance_id",
            "instance_name",
            "group_id",
            "group_name",
            "opened_at",
            "last_seen_at",
            "acknowledged_at",
            "acknowledged_by",
            "resolved_at",
        ]
        read_only_fields = fields


class AlertListQuerySerializer(StrictFieldsMixin, serializers.Serializer):
    status = serializers.ChoiceField(choices=AlertStatus.choices, required=False)
    severity = serializers.ChoiceField(choices=AlertSeverity.choices, required=False)
    rule = serializers.ChoiceField(choices=AlertRule.choices, required=False)
    instance_id = serializers.UUIDField(required=False, help_text="The instance's public id.")
    group_id = serializers.IntegerField(min_value=1, max_value=2**63 - 1, required=False)
    limit = serializers.IntegerField(min_value=1, max_value=1000, required=False, default=100)
    offset = offset_field()
