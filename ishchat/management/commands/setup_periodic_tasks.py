from django.core.management.base import BaseCommand
from django.db import transaction
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from ishchat.periodic import DEFAULT_TASKS


class Command(BaseCommand):
    help = "Create the default periodic tasks that are missing; existing ones (and operators' edits) are kept."

    def handle(self, *args: object, **options: object) -> None:
        created = 0
        with transaction.atomic():
            for default in DEFAULT_TASKS:
                if PeriodicTask.objects.filter(name=default.name).exists():
                    continue
                schedule, _ = IntervalSchedule.objects.get_or_create(
                    every=default.every_seconds, period=IntervalSchedule.SECONDS
                )
                PeriodicTask.objects.create(
                    name=default.name, task=default.task, interval=schedule, description=default.description
                )
                created += 1
                self.stdout.write(f"created {default.name!r} every {default.every_seconds} s")
        self.stdout.write(f"{created} created, {len(DEFAULT_TASKS) - created} already present")
