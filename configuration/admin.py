"""Runtime settings in the admin: every save and delete goes through configuration.services."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from configuration.models import RuntimeSetting
from configuration.redaction import redact
from configuration.schema import PathError, dotted, leaf_at, nest, parse_path
from configuration.selectors import config_effective_with_sources, config_ignored_settings, config_sources
from configuration.services import config_validate, runtime_setting_set, runtime_settings_remove


class RuntimeSettingForm(forms.ModelForm):
    """Validates the value against the whole configuration, exactly as PATCH /api/config does."""

    class Meta:
        model = RuntimeSetting
        fields = ("path", "value")
        help_texts = {"value": 'JSON, e.g. 15, 0.5, true, "round_robin" or ["glm-4", "glm-4-air"].'}

    def clean_path(self) -> str:
        text = self.cleaned_data["path"]
        try:
            keys = parse_path(text)
            leaf_at(keys)
        except PathError as exc:
            raise ValidationError(str(exc)) from None
        return dotted(keys)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        text = cleaned.get("path", self.instance.path)
        if not text or "value" not in cleaned or self.errors:
            return cleaned
        try:
            config_validate(changes=nest({parse_path(text): cleaned["value"]}))
        except ValidationError as exc:
            for error_path, messages_ in exc.message_dict.items():
                for message in messages_:
                    if error_path == text:
                        self.add_error("value", message)
                    else:
                        self.add_error(None, f"{error_path}: {message}")
        return cleaned


@admin.register(RuntimeSetting)
class RuntimeSettingAdmin(admin.ModelAdmin):
    form = RuntimeSettingForm
    list_display = ("path", "value_json", "effective_source", "updated_by", "updated_at")
    search_fields = ("path", "updated_by")
    list_filter = ("updated_by",)
    date_hierarchy = "updated_at"
    actions = ["remove_overrides"]
    change_list_template = "admin/configuration/runtimesetting/change_list.html"

    def get_readonly_fields(self, request: HttpRequest, obj: RuntimeSetting | None = None) -> tuple[str, ...]:
        # Changing the path of an override is removing one and adding another.
        return ("path", "updated_by", "updated_at") if obj else ("updated_by", "updated_at")

    @admin.display(description="value")
    def value_json(self, obj: RuntimeSetting) -> str:
        text = json.dumps(obj.value)
        return text if len(text) <= 80 else text[:77] + "..."

    @admin.display(description="effective source")
    def effective_source(self, obj: RuntimeSetting) -> str:
        ignored = config_ignored_settings()
        if obj.path in ignored:
            return f"not applied: {ignored[obj.path]}"
        return config_sources().get(obj.path, "not applied")

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # deletes without validating; remove_overrides replaces it
        return actions

    @admin.action(description="Remove selected overrides (revert to env/file/default)", permissions=["delete"])
    def remove_overrides(self, request: HttpRequest, queryset: QuerySet[RuntimeSetting]) -> None:
        try:
            change = runtime_settings_remove(
                paths=list(queryset.values_list("path", flat=True)), updated_by=_who(request)
            )
        except ValidationError as exc:
            self.message_user(request, f"Nothing removed: {_describe(exc)}", messages.ERROR)
            return
        self.message_user(request, f"Removed {len(change.removed)} override(s).", messages.SUCCESS)

    def save_model(self, request: HttpRequest, obj: RuntimeSetting, form: forms.Form, change: bool) -> None:
        saved = runtime_setting_set(path=obj.path, value=obj.value, updated_by=_who(request))
        obj.pk, obj.updated_by, obj.updated_at = saved.pk, saved.updated_by, saved.updated_at
        obj._state.adding = False

    def delete_model(self, request: HttpRequest, obj: RuntimeSetting) -> None:
        runtime_settings_remove(paths=[obj.path], updated_by=_who(request))

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: dict | None = None) -> HttpResponse:
        try:
            return super().delete_view(request, object_id, extra_context)
        except ValidationError as exc:  # raised inside the admin's transaction, so nothing was logged either
            self.message_user(request, f"Not removed: {_describe(exc)}", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:configuration_runtimesetting_change", args=[object_id]))

    def get_urls(self) -> list[URLPattern]:
        extra = [
            path(
                "effective/",
                self.admin_site.admin_view(self.effective_view),
                name="configuration_runtimesetting_effective",
            )
        ]
        return extra + super().get_urls()

    def effective_view(self, request: HttpRequest) -> TemplateResponse:
        """Every effective value and its source, read-only, with a link to override it."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        effective, sources = config_effective_with_sources()
        effective = redact(effective)
        rows = []
        for text, source in sources.items():
            value: Any = effective
            for key in parse_path(text):
                value = value[key]
            rows.append({"path": text, "value": json.dumps(value), "source": source})
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Effective configuration",
            "rows": rows,
            "ignored": config_ignored_settings(),
            "can_add": self.has_add_permission(request),
        }
        return TemplateResponse(request, "admin/configuration/runtimesetting/effective.html", context)


def _who(request: HttpRequest) -> str:
    return f"admin:{request.user.get_username()}"


def _describe(exc: ValidationError) -> str:
    return "; ".join(f"{path}: {message}" for path, messages_ in exc.message_dict.items() for message in messages_)
