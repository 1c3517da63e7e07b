"""WSGI entry point, e.g. `gunicorn -b 127.0.0.1:8000 mysite.wsgi`."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

application = get_wsgi_application()
