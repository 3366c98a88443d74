# One image for the web process (gunicorn), the Celery worker, Celery beat and migrations;
# the Kubernetes manifests in deploy/ pick the command. Build: docker build -t cratos-redeploy .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=cratos.settings

WORKDIR /app

# python-ldap (the LDAP login) compiles against OpenLDAP's and SASL's headers.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libldap2-dev libsasl2-dev \
    && rm -rf /var/lib/apt/lists/*

# Named one by one so a developer's .venv, .env or db.sqlite3 never lands in the image.
COPY pyproject.toml README.md manage.py gunicorn.conf.py ./
COPY cratos cratos
COPY tickets tickets
COPY redeploy redeploy
COPY templates templates
COPY static static
RUN pip install . \
    && python manage.py collectstatic --noinput

# A fixed numeric UID, so the pod's runAsNonRoot can verify it.
RUN useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin cratos
USER 10001:10001

EXPOSE 8000
CMD ["gunicorn", "--config", "gunicorn.conf.py", "cratos.wsgi"]
