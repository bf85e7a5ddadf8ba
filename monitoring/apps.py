from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = "Monitoring"

    def ready(self) -> None:
        # Registering only describes the metrics (no query); samples are computed at scrape time.
        from monitoring.metrics import register_collector

        register_collector()
