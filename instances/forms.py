"""The admin's instance form: it validates and saves through the registry services."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError

from instances import services
from instances.models import AIInstance
from ishchat.errors import ConflictError

# Service error keys that name something other than a form field.
_ERROR_FIELD_ALIASES = {"group_id": "group", "api_key": "new_api_key", "non_field_errors": NON_FIELD_ERRORS}


class AIInstanceAdminForm(forms.ModelForm):
    """Registers (add) or updates (change) an instance through the services.

    The provider key is write-only: `new_api_key` never renders a value, blank
    keeps the stored key, `clear_api_key` removes it. The service call is the
    last step of validation (see `_post_clean`), so the SSRF guard, the 409 on
    a duplicate name and the model's own checks all come back as form errors.
    """

    new_api_key = forms.CharField(
        label="Set new key",
        required=False,
        strip=True,
        max_length=4096,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only: it is encrypted at rest and never shown again. Leave blank to keep the current key.",
    )
    clear_api_key = forms.BooleanField(
        label="Clear key",
        required=False,
        help_text="Remove the stored key; the provider's key from the environment is used instead, if set.",
    )

    class Meta:
        model = AIInstance
        fields = [
            "provider_type",
            "model_name",
            "instance_name",
            "endpoint_url",
            "region",
            "group",
            "weight",
            "priority",
            "max_concurrent_requests",
            "requests_per_minute",
            "tokens_per_minute",
            "temperature",
            "max_tokens",
            "timeout",
            "tags",
            "metadata",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is None:
            # Nothing to clear yet, and on add the field is simply the key.
            self.fields.pop("clear_api_key", None)
            self.fields["new_api_key"].label = "API key"
            self.fields["new_api_key"].help_text = (
                "Write-only: encrypted at rest and never shown again. "
                "Blank uses the provider's key from the environment."
            )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("clear_api_key") and cleaned.get("new_api_key"):
            self.add_error("clear_api_key", "Either set a new key or clear it, not both.")
        return cleaned

    def _post_clean(self) -> None:
        """Save through the services instead of ModelForm's construct-and-validate.

        Only the services know whether a write is acceptable (endpoint guard,
        name conflicts, encryption), so calling them is the final validation
        step. The admin wraps the whole request in a transaction, and the
        services raise before they write, so an invalid form leaves no trace.
        """
        if self.errors:
            return
        try:
            if self.instance.pk is None:
                self.instance = services.instance_register(**self._registration())
            else:
                changes = self._changes()
                if changes:
                    self.instance = services.instance_update(instance=self.instance, changes=changes)
        except ValidationError as exc:
            self._add_service_errors(exc)
        except ConflictError as exc:
            self._add_service_errors(ValidationError({exc.field or NON_FIELD_ERRORS: [exc.message]}))

    def _registration(self) -> dict[str, Any]:
        data = {name: value for name, value in self.cleaned_data.items() if name in services.UPDATABLE_FIELDS}
        group = self.cleaned_data.get("group")
        return {
            **data,
            "provider_type": self.cleaned_data["provider_type"],
            "group_id": group.pk if group else None,
            "api_key": self.cleaned_data.get("new_api_key") or None,
        }

    def _changes(self) -> dict[str, Any]:
        """Only what the operator changed: an untouched endpoint is not re-checked."""
        changes = {
            name: self.cleaned_data[name] for name in self.changed_data if name in services.UPDATABLE_FIELDS
        }
        if "group" in self.changed_data:
            group = self.cleaned_data.get("group")
            changes["group_id"] = group.pk if group else None
        if self.cleaned_data.get("clear_api_key"):
            changes["api_key"] = ""
        elif self.cleaned_data.get("new_api_key"):
            changes["api_key"] = self.cleaned_data["new_api_key"]
        return changes

    def _add_service_errors(self, exc: ValidationError) -> None:
        errors = exc.message_dict if hasattr(exc, "error_dict") else {NON_FIELD_ERRORS: exc.messages}
        for name, messages in errors.items():
            field = _ERROR_FIELD_ALIASES.get(name, name)
            if field != NON_FIELD_ERRORS and field not in self.fields:
                # A field this form does not show (read-only here): name it in the message.
                messages = [f"{name}: {message}" for message in messages]
                field = NON_FIELD_ERRORS
            self.add_error(None if field == NON_FIELD_ERRORS else field, messages)
