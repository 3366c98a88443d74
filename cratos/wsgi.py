import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cratos.settings")
application = get_wsgi_application()

from cratos.startup import refuse_unsafe_keys  # noqa: E402  (needs the settings configured)

refuse_unsafe_keys()
