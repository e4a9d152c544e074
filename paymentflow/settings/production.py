"""Production settings: debug off, a real secret, HTTPS-only cookies and headers.

Started by gunicorn (`paymentflow.wsgi`). Refuses to start without DJANGO_SECRET_KEY or
REDIS_URL.
"""

import os

from django.core.exceptions import ImproperlyConfigured

if not os.environ.get("DJANGO_SECRET_KEY", "").strip():
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set in production.")
# The throttle counters and the caches must be shared by every instance; the local-memory
# fallback would give each process its own.
if not os.environ.get("REDIS_URL", "").strip():
    raise ImproperlyConfigured("REDIS_URL must be set in production (e.g. redis://127.0.0.1:6379/0).")
os.environ["DJANGO_DEBUG"] = "0"

from paymentflow.settings.base import *  # noqa: E402,F403
from paymentflow.settings.env import env_bool, env_int  # noqa: E402

DEBUG = False

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = False

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
X_FRAME_OPTIONS = "DENY"
# Health probes and Prometheus's scrapes come over plain HTTP from inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
