"""ishchat.urls with monitoring.api.urls included where it belongs (before instances.api.urls),
unless the project already includes it."""

from django.urls import include, path

from ishchat.urls import handler404, handler500  # noqa: F401
from ishchat.urls import urlpatterns as project_urls


def _module(pattern: object) -> str:
    return getattr(getattr(pattern, "urlconf_name", None), "__name__", "")


urlpatterns = list(project_urls)
if not any(_module(p) == "monitoring.api.urls" for p in urlpatterns):
    position = next(i for i, p in enumerate(urlpatterns) if _module(p) == "instances.api.urls")
    urlpatterns.insert(position, path("api/", include("monitoring.api.urls")))
