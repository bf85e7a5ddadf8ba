from django.urls import path

from monitoring.api import views

# Included under api/ BEFORE instances.api.urls, whose instances/<instance_id> would take "cleanup".
urlpatterns = [
    path("instances/cleanup", views.CleanupView.as_view(), name="instances-cleanup"),
    path("reports", views.ReportListView.as_view(), name="report-list"),
    path("reports/<int:report_id>", views.ReportDetailView.as_view(), name="report-detail"),
    path("reports/<int:report_id>/download", views.ReportDownloadView.as_view(), name="report-download"),
]
