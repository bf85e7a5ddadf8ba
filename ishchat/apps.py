from django.apps import AppConfig


class IshChatConfig(AppConfig):
    name = "ishchat"
    verbose_name = "ISH Chat Instance Manager"

    def ready(self) -> None:
        from ishchat import checks  # noqa: F401  (registers the system checks)
