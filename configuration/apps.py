from django.apps import AppConfig


class ConfigurationConfig(AppConfig):
    name = "configuration"
    verbose_name = "Configuration"

    def ready(self) -> None:
        from django.core.checks import register

        from configuration.checks import configuration_check

        register(configuration_check)
