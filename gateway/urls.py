"""The OpenAI-compatible endpoints, for the project's root URLconf: path("", include("gateway.urls")).

In production the raw ASGI front door (gateway/asgi.py) answers these paths
before Django sees them; these routes serve them everywhere else.
"""

from django.urls import path

from gateway import views

urlpatterns = [
    path("v1/chat/completions", views.chat_completions, name="gateway-chat-completions"),
    path("v1/models", views.models, name="gateway-models"),
]
