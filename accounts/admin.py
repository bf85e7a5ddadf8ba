from django.contrib import admin
from rest_framework_api_key.admin import APIKeyModelAdmin
from rest_framework_api_key.models import APIKey

from accounts.models import ProjectAPIKey

# One kind of key in the admin: ours, with an access level.
admin.site.unregister(APIKey)


@admin.register(ProjectAPIKey)
class ProjectAPIKeyAdmin(APIKeyModelAdmin):
    """Creating a key shows it once in a message; only its hash is stored."""

    list_display = ("prefix", "name", "access", "created", "expiry_date", "_has_expired", "revoked")
    list_filter = ("access", "revoked", "created")
    fields = ("name", "access", "expiry_date", "revoked", "prefix")
