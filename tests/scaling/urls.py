"""The project's URLs with the auto-scaling API included first, for these tests.

Until ishchat/urls.py includes scaling.api.urls itself (before instances.api.urls); afterwards
the second include is simply never reached.
"""

from django.urls import include, path

from ishchat.urls import handler404, handler500  # noqa: F401
from ishchat.urls import urlpatterns as project_urlpatterns

urlpatterns = [path("api/", include("scaling.api.urls")), *project_urlpatterns]
