from django.db import models


class Access(models.TextChoices):
    READ_ONLY = "read_only", "Read only"
    FULL = "full", "Full access"
