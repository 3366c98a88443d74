"""Settings come from the environment (12-factor); every default is the zero-setup demo."""

from pathlib import Path

import environ
import ldap
from django_auth_ldap.config import LDAPSearch
from kombu import Queue

from cratos.identity.ldap_config import ldap_connection_options, ldap_group_type

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
# With DEBUG off the product refuses to start on this key (cratos.startup).
DEMO_SECRET_KEY = "insecure-demo-key-change-me-in-production"
SECRET_KEY = env("SECRET_KEY", default=DEMO_SECRET_KEY)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Key for cluster credentials at rest; separate from SECRET_KEY so sessions can be rotated alone.
# It encrypts; the FIELD_ENCRYPTION_OLD_KEYS (comma-separated) only decrypt, until
# `manage.py reencrypt_credentials` has moved every stored credential to the new key.
FIELD_ENCRYPTION_KEY = env("FIELD_ENCRYPTION_KEY", default="")
FIELD_ENCRYPTION_OLD_KEYS = env.list("FIELD_ENCRYPTION_OLD_KEYS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_tables2",
    "django_filters",
    "django_htmx",
    "cratos.audit",
    "cratos.teams",
    "cratos.identity",
    "tickets",
    "redeploy",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "cratos.security.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "cratos.middleware.EdgeInputMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "cratos.middleware.DomainErrorMiddleware",
]

ROOT_URLCONF = "cratos.urls"
WSGI_APPLICATION = "cratos.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
                "cratos.context_processors.audit_role",
                "tickets.context_processors.approver_role",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
# Keep connections between requests and between tasks, checked before reuse: opening one costs
# milliseconds on every request and task. `?conn_max_age=0` in DATABASE_URL closes them each time.
DATABASES["default"].setdefault("CONN_MAX_AGE", 60)
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The authorization store. With REDIS_URL the tokens live in Redis exactly as the manual
# describes; without it an in-process store with the same TTL/atomic semantics serves the demo.
REDIS_URL = env("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                "SOCKET_CONNECT_TIMEOUT": 2,
                "SOCKET_TIMEOUT": 2,
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [BASE_DIR / "locale"]
# ISO dates with their zone in every language, the admin's included (cratos/formats/).
FORMAT_MODULE_PATH = ["cratos.formats"]
TIME_ZONE = env("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# -- Authentication (docs/operations.md, "Company login") --------------------------------------
LOGIN_URL = "login"
# Each role's own page (cratos.identity.views.landing), unless the sign-in was for another page.
LOGIN_REDIRECT_URL = "landing"
LOGOUT_REDIRECT_URL = "login"
# Roles and teams from the directory are renewed at sign-in, so a session's length bounds how
# long a removed group still counts (Django's default: two weeks).
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=14 * 24 * 3600)

# Local passwords: "all" (the demo), "superusers" (a break-glass admin) or "none"; the user
# names in LOCAL_PASSWORD_USERS may use theirs whatever the policy.
LOCAL_PASSWORDS = env("LOCAL_PASSWORDS", default="all")
LOCAL_PASSWORD_USERS = env.list("LOCAL_PASSWORD_USERS", default=[])

# The directory's groups (LDAP group names, the OIDC groups claim) that give each role and team;
# each is renewed at every sign-in. A role or team mapped to no group is left to the admin.
DIRECTORY_ROLE_GROUPS = {
    "Requesters": env.list("DIRECTORY_REQUESTERS_GROUPS", default=[]),
    "Approvers": env.list("DIRECTORY_APPROVERS_GROUPS", default=[]),
    "Reviewers": env.list("DIRECTORY_REVIEWERS_GROUPS", default=[]),
}
# team=group;group,team=group
DIRECTORY_TEAM_GROUPS = {
    team: [group for group in groups.split(";") if group]
    for team, groups in env.dict("DIRECTORY_TEAM_GROUPS", default={}).items()
}
# Roles that need the admin (staff status) when the directory manages roles.
DIRECTORY_STAFF_ROLES = env.list("DIRECTORY_STAFF_ROLES", default=["Approvers"])

# LDAP (django-auth-ldap), when LDAP_SERVER_URI is set: ldap://host (with LDAP_START_TLS=true)
# or ldaps://host. A service account searches for the user, whose password is then checked by
# binding as them; their groups come from a group search.
LDAP_SERVER_URI = env("LDAP_SERVER_URI", default="")
AUTH_LDAP_SERVER_URI = LDAP_SERVER_URI
AUTH_LDAP_BIND_DN = env("LDAP_BIND_DN", default="")
AUTH_LDAP_BIND_PASSWORD = env("LDAP_BIND_PASSWORD", default="")
AUTH_LDAP_START_TLS = env.bool("LDAP_START_TLS", default=False)
AUTH_LDAP_USER_SEARCH = LDAPSearch(
    env("LDAP_USER_SEARCH_BASE", default=""),
    ldap.SCOPE_SUBTREE,
    env("LDAP_USER_FILTER", default="(uid=%(user)s)"),
)
AUTH_LDAP_GROUP_SEARCH = LDAPSearch(
    env("LDAP_GROUP_SEARCH_BASE", default=""),
    ldap.SCOPE_SUBTREE,
    env("LDAP_GROUP_FILTER", default="(objectClass=groupOfNames)"),
)
AUTH_LDAP_GROUP_TYPE = ldap_group_type(env("LDAP_GROUP_TYPE", default="groupOfNames"))
AUTH_LDAP_USER_ATTR_MAP = {"first_name": "givenName", "last_name": "sn", "email": "mail"}
AUTH_LDAP_ALWAYS_UPDATE_USER = True
AUTH_LDAP_CONNECTION_OPTIONS = ldap_connection_options(
    ca_file=env("LDAP_CA_FILE", default=""), timeout=env.float("LDAP_TIMEOUT", default=5.0)
)

# OpenID Connect (mozilla-django-oidc), when OIDC_RP_CLIENT_ID is set: authorization code flow
# with PKCE; the provider's endpoints as its discovery document lists them.
OIDC_PROVIDER_NAME = env("OIDC_PROVIDER_NAME", default="single sign-on")
OIDC_RP_CLIENT_ID = env("OIDC_RP_CLIENT_ID", default="")
OIDC_RP_CLIENT_SECRET = env("OIDC_RP_CLIENT_SECRET", default="")
OIDC_OP_AUTHORIZATION_ENDPOINT = env("OIDC_OP_AUTHORIZATION_ENDPOINT", default="")
OIDC_OP_TOKEN_ENDPOINT = env("OIDC_OP_TOKEN_ENDPOINT", default="")
OIDC_OP_USER_ENDPOINT = env("OIDC_OP_USER_ENDPOINT", default="")
OIDC_OP_JWKS_ENDPOINT = env("OIDC_OP_JWKS_ENDPOINT", default="")
OIDC_OP_LOGOUT_ENDPOINT = env("OIDC_OP_LOGOUT_ENDPOINT", default="")
OIDC_RP_SIGN_ALGO = env("OIDC_RP_SIGN_ALGO", default="RS256")
OIDC_RP_SCOPES = env("OIDC_RP_SCOPES", default="openid email profile")
OIDC_USERNAME_CLAIM = env("OIDC_USERNAME_CLAIM", default="preferred_username")
OIDC_GROUPS_CLAIM = env("OIDC_GROUPS_CLAIM", default="groups")
OIDC_USE_PKCE = True
OIDC_TIMEOUT = env.float("OIDC_TIMEOUT", default=10.0)
# Kept for the provider's sign-out (id_token_hint).
OIDC_STORE_ID_TOKEN = True
OIDC_OP_LOGOUT_URL_METHOD = "cratos.identity.oidc.provider_logout_url"
OIDC_AUTHENTICATION_CALLBACK_URL = "oidc_authentication_callback"

AUTHENTICATION_BACKENDS = [
    *(["cratos.identity.backends.CompanyLDAPBackend"] if LDAP_SERVER_URI else []),
    *(["cratos.identity.backends.CompanyOIDCBackend"] if OIDC_RP_CLIENT_ID else []),
    "cratos.identity.backends.LocalPasswordBackend",
]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first, so an unauthenticated API call gets 401 with WWW-Authenticate.
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "EXCEPTION_HANDLER": "cratos.api.exception_handler",
    # Refuses JSON nested too deeply and NUL characters with 400 (cratos.validation).
    "DEFAULT_PARSER_CLASSES": [
        "cratos.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "UNAUTHENTICATED_USER": None,
    # \u-escape non-ASCII: a lone surrogate echoed from a request (an unknown field's name)
    # cannot be encoded as UTF-8 and would turn a 400 into a 500.
    "UNICODE_JSON": False,
}

# Celery. Without a broker the tasks run in-process, so the demo needs no RabbitMQ/Redis.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
# Without a broker, run tasks in a background thread of the web process (the demo), not
# inline in the request; the test suite turns this off to run them inline.
TASKS_IN_THREADS = env.bool("TASKS_IN_THREADS", default=not CELERY_BROKER_URL)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_TIMEOUT = 3
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.5,
    # A Redis broker hands the task of a worker that died to another one after this many
    # seconds (kombu's default: an hour). Longer than any task runs; tasks are safe to rerun.
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=600),
    # A worker consuming several queues empties them in the order of CELERY_TASK_QUEUES (a
    # Redis broker; RabbitMQ takes turns): during a burst a restart someone waits for goes
    # before the follow-ups and notices of the restarts before it, which only report them.
    "queue_order_strategy": "priority",
}
CELERY_TIMEZONE = TIME_ZONE
# Celery's Django fixup would close the database connection around every task; cratos.celery
# recycles it as Django does between requests (CONN_MAX_AGE, health checks), this bounds it.
CELERY_DB_REUSE_MAX = 1000
# Task modules not named tasks.py, which autodiscovery would miss.
CELERY_IMPORTS = ["tickets.notification_tasks"]
# Notices (mail, webhooks) wait in a queue of their own, which a worker consumes after the
# default one (in this order, queue_order_strategy above): a batch of 200 redeploys sends 200
# notices, and the next redeploy must not wait behind them. Rollouts and pod deletions are
# watched from a queue of their own too: a task watches for up to
# REDEPLOY_ROLLOUT_WATCH_SECONDS, so give it workers of their own (threads) and the next
# redeploy never waits behind a watch. A worker started without -Q consumes all.
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_QUEUES = [
    Queue("celery"),
    Queue("rollouts"),
    Queue("notices"),
    Queue("notice_channels"),
]
CELERY_TASK_ROUTES = {
    "redeploy.follow_rollouts": {"queue": "rollouts"},
    "redeploy.follow_pod_deletions": {"queue": "rollouts"},
    "tickets.send_*": {"queue": "notices"},
    "tickets.post_webhook": {"queue": "notices"},
    "tickets.deliver_notice": {"queue": "notice_channels"},
}
# Tickets still waiting for approval after this many days close as expired.
TICKET_APPROVAL_MAX_AGE_DAYS = env.int("TICKET_APPROVAL_MAX_AGE_DAYS", default=7)
CELERY_BEAT_SCHEDULE = {
    "expire-stale-tickets": {
        "task": "tickets.expire_stale_tickets",
        "schedule": env.float("TICKET_EXPIRY_SWEEP_SECONDS", default=900.0),
    },
    "expire-unused-authorizations": {
        "task": "tickets.expire_unused_authorizations",
        "schedule": env.float("AUTHORIZATION_EXPIRY_SWEEP_SECONDS", default=60.0),
        # A sweep that waited past the next one is pointless; the next one does the work.
        "options": {"expires": 55},
    },
    "warn-expiring-authorizations": {
        "task": "tickets.warn_expiring_authorizations",
        "schedule": env.float("AUTHORIZATION_EXPIRY_WARNING_SWEEP_SECONDS", default=60.0),
        "options": {"expires": 55},
    },
    "settle-stuck-operations": {
        "task": "redeploy.settle_stuck_operations",
        "schedule": env.float("OPERATION_RECONCILE_SECONDS", default=60.0),
        "options": {"expires": 55},
    },
}
# An operation still QUEUED or RUNNING this long is settled by the reconciler from the
# cluster's truth. Longer than a killed worker's task takes to come back (the visibility
# timeout), so redelivery gets its chance first.
OPERATION_STUCK_AFTER_SECONDS = env.int("OPERATION_STUCK_AFTER_SECONDS", default=900)

# Kubernetes API calls: seconds to connect/read before a call counts as failed.
KUBERNETES_REQUEST_TIMEOUT = env.float("KUBERNETES_REQUEST_TIMEOUT", default=10.0)
# Field manager recorded on every PATCH the product sends (visible in managedFields).
KUBERNETES_FIELD_MANAGER = "cratos-redeploy"
# Transient failures (refused, timeout, 5xx, 429) are retried this many times in all, the
# first pause KUBERNETES_RETRY_BACKOFF seconds, doubling (capped at 10 s; Retry-After wins).
KUBERNETES_RETRY_ATTEMPTS = env.int("KUBERNETES_RETRY_ATTEMPTS", default=4)
KUBERNETES_RETRY_BACKOFF = env.float("KUBERNETES_RETRY_BACKOFF", default=0.5)
# API calls in flight at once per worker process and cluster when a batch of redeploys runs
# (kubectl sends one at a time; an API server serves many clients side by side); each cluster
# has threads of its own, so one that hangs never holds back another's restarts.
KUBERNETES_PARALLEL_REQUESTS = env.int("KUBERNETES_PARALLEL_REQUESTS", default=8)
# A batch that restarts this many Deployments or more in one namespace reads them with one LIST
# of the namespace (the paused check) instead of one GET each.
KUBERNETES_LIST_FROM = env.int("KUBERNETES_LIST_FROM", default=10)
# Seconds before watching a rollout or a pod deletion again after an API error (both are
# watched), and between two looks of the reconciler's.
REDEPLOY_ROLLOUT_POLL_SECONDS = env.float("REDEPLOY_ROLLOUT_POLL_SECONDS", default=2.0)
# Seconds one task watches rollouts before the next task resumes the watches: a 10-minute
# rollout costs 5 watch requests, and no worker is held for a whole rollout.
REDEPLOY_ROLLOUT_WATCH_SECONDS = env.float("REDEPLOY_ROLLOUT_WATCH_SECONDS", default=120.0)
# Seconds the pod-delete page waits for the worker to list the pods it offers.
POD_LISTING_WAIT_SECONDS = env.float("POD_LISTING_WAIT_SECONDS", default=5.0)
# Redeploys one request (and one task) may carry.
REDEPLOY_MAX_BATCH = env.int("REDEPLOY_MAX_BATCH", default=1000)
# Every requester may request every application, not only the members of its owner teams (an
# application's own "open to every requester" opens just that one).
APPLICATIONS_OPEN_TO_ALL_REQUESTERS = env.bool("APPLICATIONS_OPEN_TO_ALL_REQUESTERS", default=False)

# Notices: deep links are built on SITE_URL; mail goes through Django's email backend.
SITE_URL = env("SITE_URL", default="http://127.0.0.1:8000")
EMAIL_BACKEND = env("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="Cratos Redeploy <cratos@localhost>")
EMAIL_HOST = env("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
NOTICE_WEBHOOK_TIMEOUT = env.float("NOTICE_WEBHOOK_TIMEOUT", default=5.0)

# -- Notices in chat robots (docs/operations.md, "Notice channels") --------------------------
# A card a robot did not take (no answer, 5xx, 429, the platform's rate-limit answer) is tried
# again this many times, after NOTICE_DELIVERY_BACKOFF_SECONDS, doubling (a Retry-After wins
# when longer); then the delivery fails, on the channel's record and in the audit log.
NOTICE_DELIVERY_MAX_RETRIES = env.int("NOTICE_DELIVERY_MAX_RETRIES", default=4)
NOTICE_DELIVERY_BACKOFF_SECONDS = env.float("NOTICE_DELIVERY_BACKOFF_SECONDS", default=15.0)
# The requester hears this many minutes before an unused authorization runs out.
NOTICE_EXPIRY_WARNING_MINUTES = env.int("NOTICE_EXPIRY_WARNING_MINUTES", default=15)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
}

# -- Web hardening (docs/operations.md, "Web hardening") ------------------------------------
# Outside DEBUG the web, worker and beat refuse to start on the demo's SECRET_KEY or without a
# FIELD_ENCRYPTION_KEY of its own (cratos.startup). In DEBUG, credentials are encrypted with
# SECRET_KEY unless a key of their own is set.
if DEBUG:
    FIELD_ENCRYPTION_KEY = FIELD_ENCRYPTION_KEY or SECRET_KEY

# DJANGO_SECURE=true once the site is served over HTTPS only: secure cookies, HSTS and redirect
# to HTTPS. The rest (the Content-Security-Policy too) holds in every mode; most are Django's
# defaults, spelled out so that nothing weakens them unnoticed.
DJANGO_SECURE = env.bool("DJANGO_SECURE", default=False)
SECURE_SSL_REDIRECT = DJANGO_SECURE and env.bool("SECURE_SSL_REDIRECT", default=True)
# The kubelet probes over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SESSION_COOKIE_SECURE = DJANGO_SECURE
CSRF_COOKIE_SECURE = DJANGO_SECURE
LANGUAGE_COOKIE_SECURE = DJANGO_SECURE
# A sign-in lasts this long (seconds; default a working day), however active the session.
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=8 * 3600)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000) if DJANGO_SECURE else 0
# Both bind every subdomain / the browsers' preload list for a long time: opt in knowingly.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
# Behind a proxy that terminates TLS: the header it sets, e.g. X-Forwarded-Proto. Only if the
# proxy sets it on every request; a client could otherwise claim HTTPS.
if proxy_ssl_header := env("SECURE_PROXY_SSL_HEADER", default=""):
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + proxy_ssl_header.upper().replace("-", "_"), "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# No script reads the CSRF cookie: forms carry the token, DRF's browsable API reads the page.
CSRF_COOKIE_HTTPONLY = True
# Sent by cratos.security.ContentSecurityPolicyMiddleware in every mode (it needs no HTTPS; an
# empty value turns it off). Pages load scripts and styles from static/ only: no inline script
# or style, so no 'unsafe-inline'. data: images are Pico's icons.
CONTENT_SECURITY_POLICY = env(
    "CONTENT_SECURITY_POLICY",
    default="default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
)
# Login rate limiting (cratos.security): sign-in attempts within LOGIN_FAILURE_WINDOW seconds,
# counted before the password is checked, per user name and client address (LOGIN_FAILURE_LIMIT),
# per user name from anywhere (LOGIN_ACCOUNT_LIMIT) and per address for any user name
# (LOGIN_ADDRESS_LIMIT). Reaching one locks that scope out for a window.
LOGIN_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
LOGIN_ACCOUNT_LIMIT = env.int("LOGIN_ACCOUNT_LIMIT", default=20)
LOGIN_ADDRESS_LIMIT = env.int("LOGIN_ADDRESS_LIMIT", default=50)
LOGIN_FAILURE_WINDOW = env.int("LOGIN_FAILURE_WINDOW", default=15 * 60)
# Proxies in front of the app that append to X-Forwarded-For (0: trust only the peer address).
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
