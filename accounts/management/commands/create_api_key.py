from django.core.management.base import BaseCommand, CommandParser

from accounts.choices import Access
from accounts.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key for the REST API and gateway; the key is printed once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Who or what uses the key.")
        parser.add_argument("--read-only", action="store_true", help="Allow only GET/HEAD/OPTIONS.")

    def handle(self, *args: object, **options: object) -> None:
        access = Access.READ_ONLY if options["read_only"] else Access.FULL
        api_key, plain = api_key_create(name=str(options["name"]), access=access)
        self.stdout.write(
            f"Created {api_key.get_access_display().lower()} API key {api_key.prefix!r} for {api_key.name!r}."
        )
        self.stdout.write("Store it now; it cannot be shown again:")
        self.stdout.write(plain)
