"""deploy/: the Kubernetes manifests parse, grant no more than the product needs, probe the right
endpoints, run hardened, and commit no secret. Also gunicorn.conf.py and the Dockerfile."""

import re
import runpy
from collections import Counter
from pathlib import Path

import pytest
import yaml
from django.conf import settings

ROOT = Path(settings.BASE_DIR)
DEPLOY = ROOT / "deploy"
SETTINGS_FILE = ROOT / "cratos" / "settings.py"
APP_NAMESPACE = "cratos"
SERVICE_ACCOUNT = "cratos-redeploy"
# The example overlay's allow-list: the namespaces whose Deployments may be restarted.
ALLOWED_NAMESPACES = {"shop", "payments"}
ROLE_RULES = {
    ("apps", "deployments"): {"get", "list", "watch", "patch"},
    ("apps", "replicasets"): {"get", "list"},
    ("", "pods"): {"get", "list", "delete"},  # delete: the APPLICATION_DELETE_POD action
}
SECRET_KEYS = {
    "SECRET_KEY",
    "FIELD_ENCRYPTION_KEY",
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
}
PLACEHOLDER = "CHANGE-ME"
KINDS = {
    "Namespace",
    "ServiceAccount",
    "ConfigMap",
    "Secret",
    "Deployment",
    "Service",
    "Job",
    "Role",
    "RoleBinding",
    "Ingress",
}


def _yaml_files() -> list[Path]:
    return sorted(path for path in DEPLOY.rglob("*") if path.suffix in (".yaml", ".yml"))


def _documents(paths) -> list[dict]:
    documents = []
    for path in paths:
        for document in yaml.safe_load_all(path.read_text()):
            if document is not None:
                documents.append(document)
    return documents


def _kustomization_resources(directory: Path) -> list[Path]:
    """The files a kustomization builds from, following bases recursively."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    files = []
    for entry in kustomization.get("resources", []):
        target = (directory / entry).resolve()
        files.extend(_kustomization_resources(target) if target.is_dir() else [target])
    return files


def _built(overlay: str = "overlays/example") -> list[dict]:
    """The example installation's objects, namespaces filled in as kustomize does."""
    directory = DEPLOY / overlay
    objects = []
    for path in _kustomization_resources(directory):
        kustomization_dir = next(
            parent for parent in path.parents if (parent / "kustomization.yaml").exists()
        )
        namespace = yaml.safe_load((kustomization_dir / "kustomization.yaml").read_text()).get(
            "namespace"
        )
        for document in _documents([path]):
            if namespace and document["kind"] != "Namespace":
                document["metadata"]["namespace"] = namespace
            objects.append(document)
    return objects


def _of_kind(objects, kind) -> list[dict]:
    return [obj for obj in objects if obj["kind"] == kind]


def _deployment(objects, name) -> dict:
    return next(obj for obj in _of_kind(objects, "Deployment") if obj["metadata"]["name"] == name)


def _pod_specs(objects) -> list[dict]:
    return [
        obj["spec"]["template"]["spec"] for obj in objects if obj["kind"] in ("Deployment", "Job")
    ]


# -- structure ------------------------------------------------------------------------------


def test_every_manifest_parses_and_names_its_object():
    documents = _documents(_yaml_files())

    assert documents
    for document in documents:
        if document.get("kind") == "Kustomization":
            continue
        assert document["apiVersion"], document
        assert document["kind"] in KINDS, document["kind"]
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", document["metadata"]["name"])


def test_every_kustomization_resource_exists():
    for kustomization in DEPLOY.rglob("kustomization.yaml"):
        for path in _kustomization_resources(kustomization.parent):
            assert path.is_file(), path


def test_the_example_builds_one_of_each_part():
    objects = _built()
    names = Counter((obj["kind"], obj["metadata"]["name"]) for obj in objects)

    for part in [
        ("Namespace", APP_NAMESPACE),
        ("ServiceAccount", SERVICE_ACCOUNT),
        ("ConfigMap", "cratos-config"),
        ("Deployment", "cratos-web"),
        ("Deployment", "cratos-worker"),
        ("Deployment", "cratos-follower"),
        ("Deployment", "cratos-beat"),
        ("Service", "cratos-web"),
        ("Job", "cratos-migrate"),
    ]:
        assert names[part] == 1, part
    assert all(count == 1 or kind in ("Role", "RoleBinding") for (kind, _), count in names.items())


# -- RBAC -----------------------------------------------------------------------------------


def test_no_cluster_wide_rights_anywhere():
    kinds = {document.get("kind") for document in _documents(_yaml_files())}

    assert "ClusterRole" not in kinds
    assert "ClusterRoleBinding" not in kinds


def test_roles_grant_exactly_what_the_actions_need_in_allow_listed_namespaces():
    roles = _of_kind(_built(), "Role")

    assert {role["metadata"]["namespace"] for role in roles} == ALLOWED_NAMESPACES
    assert len(roles) == len(ALLOWED_NAMESPACES)
    for role in roles:
        granted: dict[tuple[str, str], set[str]] = {}
        for rule in role["rules"]:
            assert set(rule) == {"apiGroups", "resources", "verbs"}, rule  # no resourceNames etc.
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    granted.setdefault((group, resource), set()).update(rule["verbs"])
        assert granted == ROLE_RULES, role["metadata"]["namespace"]


def test_each_role_is_bound_to_the_service_account_in_its_own_namespace():
    objects = _built()
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]) for r in _of_kind(objects, "Role")}
    bindings = _of_kind(objects, "RoleBinding")

    assert {b["metadata"]["namespace"] for b in bindings} == ALLOWED_NAMESPACES
    for binding in bindings:
        namespace = binding["metadata"]["namespace"]
        assert binding["roleRef"]["kind"] == "Role"
        assert (namespace, binding["roleRef"]["name"]) in roles
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": APP_NAMESPACE}
        ]


def test_only_the_workers_hold_a_kubernetes_token():
    objects = _built()
    account = _of_kind(objects, "ServiceAccount")[0]

    assert account["automountServiceAccountToken"] is False
    for obj in objects:
        if obj["kind"] in ("Deployment", "Job"):
            spec = obj["spec"]["template"]["spec"]
            assert spec["serviceAccountName"] == SERVICE_ACCOUNT
            mounts = spec["automountServiceAccountToken"]
            name = obj["metadata"]["name"]
            assert mounts is (name in ("cratos-worker", "cratos-follower")), name


# -- processes and probes -------------------------------------------------------------------


def _container(deployment) -> dict:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def test_web_runs_gunicorn_with_health_and_readiness_probes():
    objects = _built()
    web = _container(_deployment(objects, "cratos-web"))

    assert web["command"][0] == "gunicorn"
    assert web["command"][-1] == "cratos.wsgi"
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    ports = {port["name"]: port["containerPort"] for port in web["ports"]}
    assert ports == {"http": 8000}
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        http_get = web[probe]["httpGet"]
        assert http_get["port"] == "http"
        # The probe's Host must be allowed, or Django answers 400.
        (header,) = http_get["httpHeaders"]
        assert header == {"name": "Host", "value": "localhost"}
    config = _of_kind(objects, "ConfigMap")[0]["data"]
    assert "localhost" in config["ALLOWED_HOSTS"].split(",")


def test_the_service_reaches_the_web_pods():
    objects = _built()
    (service,) = _of_kind(objects, "Service")
    web = _deployment(objects, "cratos-web")

    assert service["spec"]["selector"] == web["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    labels = web["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


def _queues(command: list[str]) -> set[str]:
    (option,) = [part for part in command if part.startswith("--queues=")]
    return set(option.removeprefix("--queues=").split(","))


def test_worker_and_beat_run_celery():
    objects = _built()
    worker = _deployment(objects, "cratos-worker")
    follower = _deployment(objects, "cratos-follower")
    beat = _deployment(objects, "cratos-beat")

    assert _container(worker)["command"][:3] == ["celery", "--app=cratos", "worker"]
    assert _container(follower)["command"][:3] == ["celery", "--app=cratos", "worker"]
    # Watching tasks hold a process for minutes: restarts never wait behind them.
    assert _queues(_container(follower)["command"]) == {"rollouts"}
    assert "rollouts" not in _queues(_container(worker)["command"])
    # Every queue the settings route to has its consumers.
    consumed = _queues(_container(worker)["command"]) | _queues(_container(follower)["command"])
    assert consumed == {queue.name for queue in settings.CELERY_TASK_QUEUES}
    assert _container(beat)["command"][:3] == ["celery", "--app=cratos", "beat"]
    # Two schedulers would enqueue every periodic task twice.
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    # The beat state file must be on the writable volume.
    assert "--schedule=/tmp/celerybeat-schedule" in _container(beat)["command"]


def test_the_migration_job_migrates():
    (job,) = _of_kind(_built(), "Job")
    command = " ".join(job["spec"]["template"]["spec"]["containers"][0]["command"])

    assert "manage.py migrate --noinput" in command
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_every_pod_runs_hardened_with_resources():
    for spec in _pod_specs(_built()):
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] != 0
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        writable = {mount["mountPath"] for c in spec["containers"] for mount in c["volumeMounts"]}
        assert writable == {"/tmp"}
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert set(container["resources"]) == {"requests", "limits"}
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
            assert {"cpu", "memory"} <= set(container["resources"]["limits"])


def test_every_pod_reads_settings_from_the_configmap_and_the_secret():
    for spec in _pod_specs(_built()):
        for container in spec["containers"]:
            assert container["envFrom"] == [
                {"configMapRef": {"name": "cratos-config"}},
                {"secretRef": {"name": "cratos-secrets"}},
            ]


# -- settings and secrets -------------------------------------------------------------------


def test_configmap_holds_only_settings_the_app_reads_and_nothing_secret():
    (config,) = _of_kind(_built(), "ConfigMap")
    read = SETTINGS_FILE.read_text() + (ROOT / "gunicorn.conf.py").read_text()

    for key in config["data"]:
        assert f'"{key}"' in read, f"{key} is read by nothing"
        assert key not in SECRET_KEYS
        assert not re.search(r"SECRET|PASSWORD|TOKEN|_KEY$", key), key
    for value in config["data"].values():
        assert "://" not in value or value.startswith("https://"), value  # no URL with a password


def test_the_secret_is_a_template_of_placeholders_never_applied():
    secrets = [
        (path, document)
        for path in _yaml_files()
        for document in _documents([path])
        if document.get("kind") == "Secret"
    ]

    assert [path.name for path, _ in secrets] == ["secret.template.yaml"]
    (path, secret) = secrets[0]
    assert "data" not in secret  # base64 would hide what is in it
    assert set(secret["stringData"]) == SECRET_KEYS
    for key, value in secret["stringData"].items():
        assert PLACEHOLDER in value, key
    assert "TEMPLATE" in path.read_text().splitlines()[0]
    applied = {
        p for k in DEPLOY.rglob("kustomization.yaml") for p in _kustomization_resources(k.parent)
    }
    assert path.resolve() not in applied


@pytest.mark.parametrize(
    "pattern",
    [
        r"-----BEGIN [A-Z ]*(PRIVATE KEY|CERTIFICATE)-----",
        r"\beyJ[A-Za-z0-9_-]{10,}",  # a JWT, e.g. a ServiceAccount token
        r"(client-key|client-certificate|certificate-authority)-data:",
        r"\btoken:\s*\S",
        r"://[^:/\s]*:(?!CHANGE-ME@)[^@\s]+@",  # a URL with a password
    ],
)
def test_no_credential_is_committed_under_deploy(pattern):
    for path in DEPLOY.rglob("*"):
        if path.is_file():
            assert not re.search(pattern, path.read_text()), f"{path}: {pattern}"


def test_every_secret_the_settings_need_is_in_the_template():
    text = SETTINGS_FILE.read_text()

    for key in SECRET_KEYS:
        assert f'"{key}"' in text, key


# -- gunicorn and the image -----------------------------------------------------------------


def _gunicorn(monkeypatch, **environ) -> dict:
    for name in ("WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS", "GUNICORN_GRACEFUL_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))


def test_gunicorn_defaults(monkeypatch):
    config = _gunicorn(monkeypatch)

    assert config["bind"] == "0.0.0.0:8000"
    assert 1 <= config["workers"] <= config["MAX_DEFAULT_WORKERS"]
    assert config["accesslog"] == "-"
    assert config["errorlog"] == "-"
    assert config["forwarded_allow_ips"] == "127.0.0.1"
    assert 0 < config["graceful_timeout"] <= config["timeout"]


def test_gunicorn_takes_its_knobs_from_the_environment(monkeypatch):
    config = _gunicorn(
        monkeypatch,
        WEB_CONCURRENCY="3",
        FORWARDED_ALLOW_IPS="10.0.0.0/8",
        GUNICORN_GRACEFUL_TIMEOUT="20",
    )

    assert config["workers"] == 3
    assert config["forwarded_allow_ips"] == "10.0.0.0/8"
    assert config["graceful_timeout"] == 20


def test_graceful_shutdown_fits_in_the_web_pods_grace_period(monkeypatch):
    config = _gunicorn(monkeypatch)
    web = _deployment(_built(), "cratos-web")["spec"]["template"]["spec"]

    assert web["terminationGracePeriodSeconds"] > config["graceful_timeout"] + 5  # + preStop


def test_the_image_runs_as_the_non_root_user_the_pods_expect():
    dockerfile = (ROOT / "Dockerfile").read_text()

    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.M)
    assert re.search(r"^RUN pip install \.", dockerfile, re.M)
    assert "collectstatic --noinput" in dockerfile
    (user,) = re.findall(r"^USER (\d+):(\d+)$", dockerfile, re.M)
    for spec in _pod_specs(_built()):
        assert str(spec["securityContext"]["runAsUser"]) == user[0]
        assert str(spec["securityContext"]["runAsGroup"]) == user[1]
    # Named sources only: no .venv, .env or db.sqlite3 from a developer's checkout.
    assert not re.search(r"^COPY \. ", dockerfile, re.M)
