import pytest
from django.db import connection, transaction
from django.urls import reverse

from cratos.audit.models import AuditEvent
from cratos.audit.recorder import Action, Outcome, record_event
from redeploy.models import Application, DeploymentBinding, KubernetesCluster
from tests.factories import ApplicationFactory, BindingFactory, ClusterFactory, UserFactory

pytestmark = pytest.mark.django_db

TOKEN = "tok-0123-SECRET-bearer"
CERT = "-----BEGIN CERTIFICATE-----\nCERT-SECRET-9f2\n-----END CERTIFICATE-----"
KEY = "-----BEGIN PRIVATE KEY-----\nKEY-SECRET-77a\n-----END PRIVATE KEY-----"
KUBECONFIG = "apiVersion: v1\nkind: Config\nusers: [{name: u, user: {token: KCFG-SECRET-5e}}]"
SECRETS = ("SECRET-bearer", "CERT-SECRET-9f2", "KEY-SECRET-77a", "KCFG-SECRET-5e")


@pytest.fixture
def root(client):
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    client.force_login(root)
    return root


def event(**fields) -> AuditEvent:
    with transaction.atomic():
        return record_event(**fields)


def cluster_form(cluster: KubernetesCluster, **changes) -> dict:
    """The change form as a browser posts it: credential fields arrive blank."""
    data = {
        "name": cluster.name,
        "server": cluster.server,
        "ca_data": cluster.ca_data,
        "kubeconfig_context": cluster.kubeconfig_context,
        "token": "",
        "client_cert_data": "",
        "client_key_data": "",
        "kubeconfig": "",
    }
    return {**data, **changes}


def stored_column(cluster: KubernetesCluster, column: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {column} FROM redeploy_kubernetescluster WHERE id = %s", [cluster.pk]
        )
        return cursor.fetchone()[0]


class TestAuditEventAdmin:
    def test_lists_filters_and_searches_events(self, client, root):
        event(
            action=Action.REDEPLOY_FAILED,
            actor=root,
            outcome=Outcome.FAILURE,
            application_name="web",
            cluster_name="prod",
            namespace="shop",
            deployment_name="web-api",
            message="Deployment does not exist",
        )
        event(action=Action.TICKET_CREATED, actor=root, application_name="billing")
        url = reverse("admin:audit_auditevent_changelist")

        response = client.get(url)
        assert response.status_code == 200
        html = response.content.decode()
        for text in ("root", "redeploy.failed", "prod", "shop", "web-api", "Deployment does not"):
            assert text in html
        assert response.context["cl"].show_full_result_count is False

        def listed(query: dict) -> set[str]:
            response = client.get(url, query)
            return {e.action for e in response.context["cl"].result_list}

        assert listed({"action__exact": "redeploy.failed"}) == {"redeploy.failed"}
        assert listed({"outcome__exact": "SUCCESS"}) == {"ticket.created"}
        assert listed({"q": "billing"}) == {"ticket.created"}
        today = AuditEvent.objects.first().created_at
        assert len(listed({"created_at__year": today.year})) == 2

    def test_nobody_may_add_change_or_delete_an_event(self, client, root):
        audited = event(action=Action.TICKET_CREATED, actor=root, message="as it happened")
        change_url = reverse("admin:audit_auditevent_change", args=[audited.pk])
        delete_url = reverse("admin:audit_auditevent_delete", args=[audited.pk])
        add_url = reverse("admin:audit_auditevent_add")

        assert client.get(add_url).status_code == 403
        assert client.post(add_url, {"action": "ticket.created"}).status_code == 403
        assert client.post(change_url, {"message": "rewritten"}).status_code == 403
        assert client.get(delete_url).status_code == 403
        assert client.post(delete_url, {"post": "yes"}).status_code == 403

        page = client.get(change_url)
        assert page.status_code == 200
        html = page.content.decode()
        assert "as it happened" in html
        assert 'name="_save"' not in html and "<textarea" not in html
        assert delete_url not in html

        changelist = client.get(reverse("admin:audit_auditevent_changelist"))
        assert "delete_selected" not in changelist.content.decode()
        assert changelist.context["action_form"] is None
        response = client.post(
            reverse("admin:audit_auditevent_changelist"),
            {"action": "delete_selected", "_selected_action": [audited.pk], "index": 0},
        )
        assert response.status_code == 200
        assert AuditEvent.objects.get(pk=audited.pk).message == "as it happened"


class TestKubernetesClusterAdmin:
    @pytest.fixture
    def cluster(self):
        return ClusterFactory(
            name="prod",
            server="https://10.0.0.1:6443",
            token=TOKEN,
            client_cert_data=CERT,
            client_key_data=KEY,
            kubeconfig=KUBECONFIG,
            kubeconfig_context="prod-admin",
        )

    def test_credentials_never_appear_in_any_page(self, client, root, cluster):
        pages = [
            reverse("admin:redeploy_kubernetescluster_changelist"),
            reverse("admin:redeploy_kubernetescluster_change", args=[cluster.pk]),
            reverse("admin:redeploy_kubernetescluster_history", args=[cluster.pk]),
            reverse("admin:redeploy_kubernetescluster_delete", args=[cluster.pk]),
            reverse("admin:redeploy_kubernetescluster_add"),
            reverse("admin:redeploy_deploymentbinding_add"),
        ]
        for url in pages:
            response = client.get(url)
            assert response.status_code == 200, url
            for secret in SECRETS:
                assert secret.encode() not in response.content, (url, secret)

        changelist = client.get(pages[0]).content.decode()
        assert "https://10.0.0.1:6443" in changelist
        assert "kubeconfig (context prod-admin)" in changelist
        change = client.get(pages[1]).content.decode()
        assert change.count("A value is stored; leave blank to keep it.") == 4

    def test_a_failed_save_does_not_echo_typed_credentials(self, client, root, cluster):
        url = reverse("admin:redeploy_kubernetescluster_change", args=[cluster.pk])
        response = client.post(
            url,
            cluster_form(cluster, name="", token="typed-SECRET-x", client_key_data="typed-KEY-y"),
        )
        assert response.status_code == 200
        assert response.context["adminform"].form.errors["name"]
        assert b"typed-SECRET-x" not in response.content
        assert b"typed-KEY-y" not in response.content

    def test_blank_credentials_keep_the_stored_ones(self, client, root, cluster):
        url = reverse("admin:redeploy_kubernetescluster_change", args=[cluster.pk])
        response = client.post(url, cluster_form(cluster, kubeconfig_context="prod-ops"))
        assert response.status_code == 302

        cluster.refresh_from_db()
        assert cluster.kubeconfig_context == "prod-ops"
        assert (cluster.token, cluster.client_cert_data, cluster.client_key_data) == (
            TOKEN,
            CERT,
            KEY,
        )
        assert cluster.kubeconfig == KUBECONFIG
        assert TOKEN not in stored_column(cluster, "token")  # still encrypted at rest

    def test_typed_credentials_replace_and_removal_clears(self, client, root, cluster):
        url = reverse("admin:redeploy_kubernetescluster_change", args=[cluster.pk])
        response = client.post(
            url,
            cluster_form(
                cluster, token="new-token", forget_credentials=["kubeconfig", "client_key_data"]
            ),
        )
        assert response.status_code == 302
        cluster.refresh_from_db()
        assert cluster.token == "new-token"
        assert cluster.client_cert_data == CERT
        assert (cluster.client_key_data, cluster.kubeconfig) == ("", "")

        response = client.post(url, cluster_form(cluster, token="x", forget_credentials=["token"]))
        assert response.status_code == 200
        assert "not both" in response.content.decode()
        cluster.refresh_from_db()
        assert cluster.token == "new-token"

    def test_adding_a_cluster_stores_the_credentials(self, client, root):
        response = client.post(
            reverse("admin:redeploy_kubernetescluster_add"),
            {"name": "staging", "server": "https://10.0.0.9:6443", "token": TOKEN},
        )
        assert response.status_code == 302
        cluster = KubernetesCluster.objects.get(name="staging")
        assert cluster.token == TOKEN
        listing = client.get(reverse("admin:redeploy_kubernetescluster_changelist"))
        assert b"bearer token" in listing.content
        assert b"SECRET-bearer" not in listing.content

    def test_a_cluster_needs_a_server_a_kubeconfig_or_in_cluster(self, client, root):
        response = client.post(
            reverse("admin:redeploy_kubernetescluster_add"), {"name": "nowhere", "token": TOKEN}
        )
        assert response.status_code == 200
        assert "Give an API server URL, a kubeconfig, or choose in-cluster." in (
            response.content.decode()
        )
        assert not KubernetesCluster.objects.filter(name="nowhere").exists()


class TestApplicationAdmin:
    url = reverse("admin:redeploy_application_add")
    no_bindings = {
        "bindings-TOTAL_FORMS": "0",
        "bindings-INITIAL_FORMS": "0",
        "bindings-MIN_NUM_FORMS": "0",
        "bindings-MAX_NUM_FORMS": "1000",
    }

    def test_tags_are_saved_in_order_and_listed_as_the_manual_renders_them(self, client, root):
        tags = '[{"key": "team", "value": "shop"}, {"key": "tier", "value": "web"}]'
        response = client.post(self.url, {"name": "web", "tags": tags, **self.no_bindings})
        assert response.status_code == 302
        assert Application.objects.get(name="web").tags == [
            {"key": "team", "value": "shop"},
            {"key": "tier", "value": "web"},
        ]
        listing = client.get(reverse("admin:redeploy_application_changelist"))
        assert b"team:shop,tier:web" in listing.content

    @pytest.mark.parametrize(
        ("tags", "error"),
        [
            ("[{'key': 'team'}]", "Enter a valid JSON."),
            ('{"team": "shop"}', "Tags must be a list of"),
            ("{}", "Tags must be a list of"),
            ('[{"key": "team"}]', "Tags must be a list of"),
            ('[{"key": "", "value": "x"}]', "Tags must be a list of"),
        ],
    )
    def test_invalid_tags_are_shown_as_errors(self, client, root, tags, error):
        response = client.post(self.url, {"name": "web", "tags": tags, **self.no_bindings})
        assert response.status_code == 200
        assert error in response.content.decode()
        assert not Application.objects.filter(name="web").exists()

    def test_empty_tags_mean_no_tags(self, client, root):
        response = client.post(self.url, {"name": "web", "tags": "", **self.no_bindings})
        assert response.status_code == 302
        assert Application.objects.get(name="web").tags == []


class TestDeploymentBindingAdmin:
    def test_names_must_be_dns_1123(self, client, root):
        application, cluster = ApplicationFactory(name="web"), ClusterFactory(name="prod")
        url = reverse("admin:redeploy_deploymentbinding_add")
        data = {"application": application.pk, "cluster": cluster.pk}

        response = client.post(url, {**data, "namespace": "Shop_NS", "deployment_name": "Web!"})
        assert response.status_code == 200
        html = response.content.decode()
        assert "is not a valid DNS-1123 label" in html
        assert "is not a valid DNS-1123 subdomain" in html

        response = client.post(url, {**data, "namespace": "shop", "deployment_name": "web.api"})
        assert response.status_code == 302
        assert DeploymentBinding.objects.filter(
            namespace="shop", deployment_name="web.api"
        ).exists()

    def test_filters_by_cluster_and_namespace(self, client, root):
        prod, staging = ClusterFactory(name="prod"), ClusterFactory(name="staging")
        BindingFactory(application=ApplicationFactory(name="web"), cluster=prod, namespace="shop")
        BindingFactory(application=ApplicationFactory(name="api"), cluster=staging, namespace="ops")
        url = reverse("admin:redeploy_deploymentbinding_changelist")

        def listed(query: dict) -> set[str]:
            response = client.get(url, query)
            assert response.status_code == 200
            return {b.application.name for b in response.context["cl"].result_list}

        assert listed({}) == {"web", "api"}
        assert listed({"cluster__id__exact": prod.pk}) == {"web"}
        assert listed({"namespace": "ops"}) == {"api"}


@pytest.mark.parametrize("model", ["redeployoperation", "redeploytarget"])
def test_redeploy_records_are_read_only(client, root, model):
    assert client.get(reverse(f"admin:redeploy_{model}_changelist")).status_code == 200
    assert client.get(reverse(f"admin:redeploy_{model}_add")).status_code == 403


def test_the_admin_names_models_and_fields_in_chinese(client, root):
    BindingFactory(application=ApplicationFactory(name="web"))
    zh = {"HTTP_ACCEPT_LANGUAGE": "zh-hans"}

    index = client.get(reverse("admin:index"), **zh).content.decode()
    for words in ("重新部署", "应用", "Deployment 绑定", "Kubernetes 集群", "工单类型", "审计事件"):
        assert words in index
    for words in ("Deployment bindings", "Work orders", "Audit events", "Model name"):
        assert words not in index
    bindings = client.get(
        reverse("admin:redeploy_deploymentbinding_changelist"), **zh
    ).content.decode()
    for words in ("命名空间", "部署名称", "创建时间"):
        assert words in bindings
    add_application = client.get(reverse("admin:redeploy_application_add"), **zh).content.decode()
    assert "标签" in add_application and "Tags:" not in add_application
