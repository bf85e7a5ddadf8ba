"""Field validators of AIInstance, run by full_clean in every service that writes one."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError

from ishchat.jsonsafe import text_problem

MAX_TAGS = 50
MAX_TAG_LENGTH = 64
MAX_METADATA_BYTES = 16 * 1024
MAX_METADATA_DEPTH = 8  # {"a": {"b": ...}}: objects and arrays inside the metadata object


def validate_tags(value: Any) -> None:
    if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
        raise ValidationError('Tags are a list of strings, e.g. ["prod", "eu"].', code="tags_type")
    if len(value) > MAX_TAGS:
        raise ValidationError(f"At most {MAX_TAGS} tags.", code="too_many_tags")
    if any(not tag.strip() or len(tag) > MAX_TAG_LENGTH for tag in value):
        raise ValidationError(f"Each tag has 1 to {MAX_TAG_LENGTH} characters.", code="tag_length")


def validate_metadata(value: Any) -> None:
    if not isinstance(value, dict):
        raise ValidationError('Metadata is a JSON object, e.g. {"owner": "team-a"}.', code="metadata_type")
    # Before json.dumps, which recurses; NUL and lone surrogates cannot be stored (PostgreSQL's jsonb refuses NUL).
    problem = text_problem(value, max_depth=MAX_METADATA_DEPTH)
    if problem is not None:
        raise ValidationError(f"Metadata: {problem}", code="metadata_text")
    if len(json.dumps(value)) > MAX_METADATA_BYTES:
        raise ValidationError(f"At most {MAX_METADATA_BYTES} bytes of JSON.", code="metadata_size")
