from django.urls import path

from configuration.api.views import ConfigView

# Included at "api/config": the empty path makes the URL exactly /api/config.
urlpatterns = [
    path("", ConfigView.as_view(), name="config"),
]
