from django.urls import path

from dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("instances/", views.instances, name="instances"),
    path("instances/<str:instance_id>/", views.instance_detail, name="instance"),
    path("instances/<str:instance_id>/actions/<str:action>/", views.instance_action, name="instance-action"),
    path("groups/", views.groups, name="groups"),
    path("groups/<str:group_id>/", views.group_detail, name="group"),
    path("groups/<str:group_id>/scale/", views.group_scale, name="group-scale"),
    path("groups/<str:group_id>/dry-run/", views.group_dry_run, name="group-dry-run"),
    path("groups/<str:group_id>/simulate/", views.group_simulate, name="group-simulate"),
    path("balancer/", views.balancer, name="balancer"),
    path("alerts/", views.alerts, name="alerts"),
    path("alerts/<int:alert_id>/acknowledge/", views.alert_ack, name="alert-ack"),
    path("reports/", views.reports, name="reports"),
    path("reports/<int:report_id>/<str:fmt>/", views.report_download, name="report-download"),
    path("configuration/", views.configuration, name="configuration"),
]
