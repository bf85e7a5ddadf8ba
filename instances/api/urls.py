from django.urls import path

from instances.api import views

# Fixed paths come before instances/<instance_id> so "status" is never taken for an id.
urlpatterns = [
    path("instances", views.InstanceListView.as_view(), name="instance-list"),
    path("instances/register", views.InstanceRegisterView.as_view(), name="instance-register"),
    path("instances/status", views.SystemStatusView.as_view(), name="system-status"),
    path("instances/<str:instance_id>", views.InstanceDetailView.as_view(), name="instance-detail"),
    path("instances/<str:instance_id>/load", views.InstanceLoadView.as_view(), name="instance-load"),
]
