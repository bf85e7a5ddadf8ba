from django.urls import path

from alerts.api import views

urlpatterns = [
    path("alerts", views.AlertListView.as_view(), name="alert-list"),
    path("alerts/<int:alert_id>", views.AlertDetailView.as_view(), name="alert-detail"),
    path("alerts/<int:alert_id>/acknowledge", views.AlertAcknowledgeView.as_view(), name="alert-acknowledge"),
]
