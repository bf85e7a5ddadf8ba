from django.urls import path

from instances.api import views

# Fixed paths come before instances/<instance_id> so "status" is never taken for an id.
urlpatterns = [
    path("instances", views.InstanceListView.as_view(), name="instance-list"),
    path("instances/register", views.InstanceRegisterView.as_view(), name="instance-register"),
    path("instances/status", views.SystemStatusView.as_view(), name="system-status"),
    path("instances/health-summary", views.HealthSummaryView.as_view(), name="health-summary"),
    path("instances/<str:instance_id>", views.InstanceDetailView.as_view(), name="instance-detail"),
    path("instances/<str:instance_id>/load", views.InstanceLoadView.as_view(), name="instance-load"),
    path(
        "instances/<str:instance_id>/health-check",
        views.InstanceHealthCheckView.as_view(),
        name="instance-health-check",
    ),
    path("instances/<str:instance_id>/health", views.InstanceHealthView.as_view(), name="instance-health"),
    path(
        "instances/<str:instance_id>/health/history",
        views.InstanceHealthHistoryView.as_view(),
        name="instance-health-history",
    ),
]
