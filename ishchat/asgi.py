import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ishchat.settings")
django_application = get_asgi_application()

# After the app registry is ready: these import models.
from gateway.asgi import GatewayApp  # noqa: E402
from gateway.load import start_load_publisher  # noqa: E402
from ishchat.edge import BodyLimit  # noqa: E402
from monitoring.metrics import start_metrics_server  # noqa: E402

# /v1/ (the OpenAI-compatible gateway) is served by a lean ASGI front door, which bounds its own bodies;
# everything else goes through Django, behind a per-path body bound.
application = GatewayApp(BodyLimit(django_application))

# The seed's separate metrics port (INSTANCE_MANAGER_METRICS_PORT); a no-op when unset.
start_metrics_server()

# The live in-flight counts into AIInstance.current_load, every second (gateway/load.py).
start_load_publisher()
