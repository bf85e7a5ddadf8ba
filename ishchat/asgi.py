import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ishchat.settings")
application = get_asgi_application()

# The seed's separate metrics port (INSTANCE_MANAGER_METRICS_PORT); a no-op when unset.
from monitoring.metrics import start_metrics_server  # noqa: E402

start_metrics_server()
