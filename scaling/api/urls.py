from django.urls import path

from scaling.api import views

# Include before instances.api.urls: its instances/<str:instance_id> would take "groups" for an id.
urlpatterns = [
    path("instances/groups", views.GroupListView.as_view(), name="group-list"),
    path("instances/groups/<int:group_id>", views.GroupDetailView.as_view(), name="group-detail"),
    path(
        "instances/groups/<int:group_id>/auto-scaling", views.GroupAutoScalingView.as_view(), name="group-autoscaling"
    ),
    path("instances/groups/<int:group_id>/evaluate", views.GroupEvaluateView.as_view(), name="group-evaluate"),
    path("instances/groups/<int:group_id>/scale", views.GroupScaleView.as_view(), name="group-scale"),
    path(
        "instances/groups/<int:group_id>/scaling-events",
        views.GroupEventListView.as_view(),
        name="group-scaling-events",
    ),
    path("instances/auto-scaling/metrics", views.ScalingMetricsView.as_view(), name="autoscaling-metrics"),
]
