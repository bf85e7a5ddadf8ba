"""Create the first superuser when there is none; run on every `make run`.

Idempotent: once any superuser exists it prints "admin user exists" and
changes nothing, so an operator's own password is never reset.
"""

from __future__ import annotations

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction


class Command(BaseCommand):
    help = (
        "Create a superuser (DJANGO_SUPERUSER_USERNAME, default 'admin') if no superuser exists. "
        "The password comes from DJANGO_SUPERUSER_PASSWORD or is generated and printed once."
    )

    def handle(self, *args: object, **options: object) -> None:
        user_model = get_user_model()
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME", "").strip() or "admin"
        email = os.environ.get("DJANGO_SUPERUSER_EMAIL", "").strip()
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD", "")

        with transaction.atomic():
            existing = user_model.objects.filter(is_superuser=True).order_by("pk").first()
            if existing is not None:
                self.stdout.write(f"admin user exists ({existing.get_username()!r}); nothing changed.")
                return
            if user_model.objects.filter(**{user_model.USERNAME_FIELD: username}).exists():
                raise CommandError(
                    f"A user {username!r} exists but is not a superuser. Set DJANGO_SUPERUSER_USERNAME "
                    "to another name, or promote that user in the admin or with `manage.py createsuperuser`."
                )
            generated = not password
            if generated:
                password = secrets.token_urlsafe(18)
            user_model.objects.create_superuser(username=username, email=email, password=password)

        if not generated:
            self.stdout.write(f"Created admin user {username!r} with the password from DJANGO_SUPERUSER_PASSWORD.")
            return
        rule = "=" * 72
        self.stdout.write(
            "\n".join(
                [
                    rule,
                    f"  Admin user created:  {username}",
                    f"  Password:            {password}",
                    "",
                    "  This password is shown only this once. Store it now, or change it",
                    f"  later with:  .venv/bin/python manage.py changepassword {username}",
                    rule,
                ]
            )
        )
