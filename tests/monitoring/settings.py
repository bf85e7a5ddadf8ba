"""Until `monitoring` is in ishchat/settings.py: run with --ds tests.monitoring.settings.
Once it is there, this module changes nothing and can go."""

from ishchat.settings import *  # noqa: F403
from ishchat.settings import INSTALLED_APPS, MIDDLEWARE

if "monitoring" not in INSTALLED_APPS:
    INSTALLED_APPS = [*INSTALLED_APPS, "monitoring"]
if "ishchat.middleware.RequestIdMiddleware" not in MIDDLEWARE:
    MIDDLEWARE = [MIDDLEWARE[0], "ishchat.middleware.RequestIdMiddleware", *MIDDLEWARE[1:]]
ROOT_URLCONF = "tests.monitoring.urls"
