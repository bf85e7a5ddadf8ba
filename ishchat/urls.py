from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from ishchat.views import health

urlpatterns = [
    path("health", health, name="health"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs", staff_member_required(SpectacularSwaggerView.as_view(url_name="schema")), name="docs"),
    path("api/config", include("configuration.api.urls")),
    # Before instances.api.urls, whose instances/<instance_id> would take these paths.
    path("api/", include("gateway.api.urls")),
    path("api/", include("monitoring.api.urls")),
    path("api/", include("scaling.api.urls")),
    path("api/", include("instances.api.urls")),
    path("api/", include("alerts.api.urls")),
    # /v1/ through Django (runserver, WSGI); under uvicorn ishchat.asgi serves it directly.
    path("", include("gateway.urls")),
    path("dashboard/", include("dashboard.urls")),
    path("", RedirectView.as_view(pattern_name="dashboard:overview", permanent=False), name="root"),
    path("", include("django_prometheus.urls")),
]

handler404 = "ishchat.views.not_found"
handler500 = "ishchat.views.server_error"
