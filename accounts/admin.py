from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from rest_framework_api_key.models import APIKey

from accounts.models import ProjectAPIKey
from accounts.services import api_key_create, api_key_revoke

# One kind of key in the admin: ours, with an access level.
admin.site.unregister(APIKey)


@admin.register(ProjectAPIKey)
class ProjectAPIKeyAdmin(admin.ModelAdmin):
    """Creating a key shows it once in a message; only its hash is stored."""

    list_display = ("prefix", "name", "access", "created", "expiry_date", "_has_expired", "revoked")
    list_filter = ("access", "revoked", "created")
    search_fields = ("name", "prefix")
    fields = ("name", "access", "expiry_date", "revoked", "prefix")
    actions = ["revoke_keys"]

    def get_readonly_fields(self, request: HttpRequest, obj: ProjectAPIKey | None = None) -> tuple[str, ...]:
        # A revoked key stays revoked: nothing of it can be edited back.
        if obj is not None and obj.revoked:
            return ("prefix", "name", "access", "revoked", "expiry_date")
        return ("prefix",)

    def save_model(self, request: HttpRequest, obj: ProjectAPIKey, form: Any = None, change: bool = False) -> None:
        if change:
            if obj.revoked and not type(obj).objects.filter(pk=obj.pk, revoked=True).exists():
                api_key_revoke(api_key=obj)
            obj.save()
            return
        created, plain = api_key_create(name=obj.name, access=obj.access, expiry_date=obj.expiry_date)
        obj.pk, obj.id, obj.prefix, obj.hashed_key = created.pk, created.pk, created.prefix, created.hashed_key
        messages.warning(
            request,
            f"The API key for {created.name} is: {plain} — store it now, it cannot be shown again.",
        )

    @admin.action(description="Revoke selected keys")
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ProjectAPIKey]) -> None:
        count = 0
        for api_key in queryset.filter(revoked=False):
            api_key_revoke(api_key=api_key)
            count += 1
        self.message_user(request, f"Revoked {count} key(s).")
