from django.apps import AppConfig


class SimulatorConfig(AppConfig):
    """Only here so Django finds the simulate_providers command; the server itself never imports Django."""

    name = "simulator"
    verbose_name = "Simulated provider"
