"""The project's URLs plus the alerts API, for as long as ishchat/urls.py does not include it."""

from django.urls import include, path

from ishchat.urls import handler404, handler500  # noqa: F401  (the JSON error pages)
from ishchat.urls import urlpatterns as project_urlpatterns

urlpatterns = [path("api/", include("alerts.api.urls")), *project_urlpatterns]
