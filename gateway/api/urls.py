from django.urls import path

from gateway.api import views

urlpatterns = [
    path("instances/select-instance", views.SelectInstanceView.as_view(), name="instance-select"),
]
