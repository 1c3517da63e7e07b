"""Minimal settings for the article's load-balancing demo.

No database, no admin, no static files: just the views in mysite/views.py.

Environment overrides:
  DJANGO_DEBUG=1                  turn DEBUG on (default off)
  DJANGO_ALLOWED_HOSTS=a,b,c      replace the localhost-only ALLOWED_HOSTS
  DJANGO_SECRET_KEY=...           replace the development-only secret key
"""
import os

# Development-only key: this project is a local demo and test backend.
SECRET_KEY = os.environ.get(
    "DJANGO_SECRET_KEY", "ferrolb-example-not-secret-do-not-deploy"
)

DEBUG = os.environ.get("DJANGO_DEBUG", "0").lower() in ("1", "true", "yes", "on")

# The balancer forwards `Host: $host` (see examples/nginx.conf), so requests to
# 127.0.0.1:8080 or localhost:8080 arrive here with one of these hosts.
ALLOWED_HOSTS = [
    h.strip()
    for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")
    if h.strip()
]

INSTALLED_APPS = []

MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]

ROOT_URLCONF = "mysite.urls"
# Behind ferrolb (or nginx) with `proxy_set_header X-Forwarded-Proto $scheme;`: a
# request that reached the proxy over HTTPS is secure (request.is_secure()). Only safe
# because the backends listen on loopback, reachable through the proxy alone.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
WSGI_APPLICATION = "mysite.wsgi.application"

# No database is needed (runserver skips the migration check without one).
DATABASES = {}

USE_TZ = True
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
