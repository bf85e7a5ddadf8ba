"""The project's URLs with the dashboard mounted, until ishchat/urls.py mounts it itself."""

from django.urls import include, path
from django.views.generic import RedirectView

from ishchat.urls import handler404, handler500  # noqa: F401
from ishchat.urls import urlpatterns as project_urlpatterns

_mounted = any(getattr(pattern, "app_name", None) == "dashboard" for pattern in project_urlpatterns)

urlpatterns = list(project_urlpatterns)
if not _mounted:
    urlpatterns[:0] = [
        path("dashboard/", include("dashboard.urls")),
        path("", RedirectView.as_view(pattern_name="dashboard:overview", permanent=False), name="root"),
    ]
