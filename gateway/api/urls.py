from django.urls import path

from gateway.api import views

# Included before instances.api.urls (ishchat/urls.py), whose instances/<instance_id> would take these paths.
urlpatterns = [
    path("instances/select-instance", views.SelectInstanceView.as_view(), name="instance-select"),
    path("instances/<str:instance_id>/release", views.ReleaseView.as_view(), name="instance-release"),
    path("instances/load-balancer/metrics", views.LoadBalancerMetricsView.as_view(), name="lb-metrics"),
    path("instances/load-balancer/utilization", views.LoadBalancerUtilizationView.as_view(), name="lb-utilization"),
    path("instances/load-balancer/breakers", views.LoadBalancerBreakersView.as_view(), name="lb-breakers"),
    path("instances/load-balancer/configs", views.LoadBalancerConfigListView.as_view(), name="lb-config-list"),
    path(
        "instances/load-balancer/configs/<int:config_id>",
        views.LoadBalancerConfigDetailView.as_view(),
        name="lb-config-detail",
    ),
]
