"""All factories of the suite."""

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.utils import timezone

from redeploy.models import Application, DeploymentBinding, KubernetesCluster
from tickets.models import ApprovalNode, WorkOrder


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")
    password = factory.django.Password("pw-for-tests-123")

    @factory.post_generation
    def groups(self, create, extracted, **kwargs):
        for name in extracted or []:
            self.groups.add(Group.objects.get_or_create(name=name)[0])

    @factory.post_generation
    def permissions(self, create, extracted, **kwargs):
        """Granted to the user directly, as "app_label.codename"."""
        for name in extracted or []:
            app_label, codename = name.split(".")
            self.user_permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )


class GroupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Group
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"group{n}")


class ApplicationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Application
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"app-{n}")
    description = "An application"
    tags = factory.LazyFunction(lambda: [{"key": "team", "value": "shop"}])


class ClusterFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = KubernetesCluster
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"cluster-{n}")
    server = "http://127.0.0.1:1"
    token = "cluster-token"
    # The test simulator speaks plain HTTP on loopback: opted in, as an admin would.
    allow_plain_http = factory.LazyAttribute(lambda cluster: cluster.server.startswith("http://"))


class BindingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DeploymentBinding

    application = factory.SubFactory(ApplicationFactory)
    cluster = factory.SubFactory(ClusterFactory)
    namespace = "default"
    deployment_name = factory.LazyAttribute(lambda binding: binding.application.name)


class WorkOrderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = WorkOrder
        django_get_or_create = ("key",)

    # The key must have a registered entry provider; the migration creates this one.
    key = "APPLICATION_REDEPLOY"
    business_type = "APPLICATION"
    name = factory.LazyAttribute(lambda wo: wo.key.title())
    authorization_ttl_seconds = 7200


class ApprovalNodeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ApprovalNode

    work_order = factory.SubFactory(WorkOrderFactory)
    position = factory.Sequence(lambda n: n + 1)
    name = factory.Sequence(lambda n: f"node-{n}")
    node_type = ApprovalNode.Type.OR_BATCH
    group = factory.SubFactory(GroupFactory)


def approval_chain(work_order, *nodes: tuple[str, str, str]) -> list[ApprovalNode]:
    """Replace the work order's approval chain with (node type, name, group name) nodes."""
    work_order.nodes.all().delete()
    return [
        ApprovalNodeFactory(
            work_order=work_order,
            position=position,
            name=name,
            node_type=node_type,
            group=GroupFactory(name=group),
        )
        for position, (node_type, name, group) in enumerate(nodes, start=1)
    ]


class RedeployWorkOrderFactory(WorkOrderFactory):
    """The migration's APPLICATION_REDEPLOY work order: one OR_BATCH node "Approval" of group
    "Approvers", with their Chinese names. Recreates them after a transactional test flushed
    the database."""

    class Meta:
        skip_postgeneration_save = True

    name = "Application redeploy"
    name_zh_hans = "应用重新部署"

    @factory.post_generation
    def default_chain(self, create, extracted, **kwargs):
        if create and not self.nodes.exists():
            ApprovalNode.objects.create(
                work_order=self,
                position=1,
                name="Approval",
                name_zh_hans="审批",
                node_type=ApprovalNode.Type.OR_BATCH,
                group=GroupFactory(name="Approvers"),
            )


class DeletePodWorkOrderFactory(RedeployWorkOrderFactory):
    """The migration's APPLICATION_DELETE_POD work order, with the same one-node chain."""

    key = "APPLICATION_DELETE_POD"
    name = "Application pod delete"
    name_zh_hans = "应用 Pod 删除"


class TicketFactory(factory.django.DjangoModelFactory):
    """A ticket made through the services, as a requester would: NEW with one entry per
    application. `submitted=True` submits it (IN_APPROVAL); `approved_by=user` also approves
    its first node as that user (with the default one-node chain: APPROVED, authorizations
    minted in Redis)."""

    class Meta:
        model = "tickets.Ticket"

    applicant = factory.SubFactory(UserFactory)
    work_order = factory.SubFactory(RedeployWorkOrderFactory)
    applications = factory.LazyFunction(lambda: [ApplicationFactory()])
    reason = "Pick up the new configuration"
    submitted = False
    approvers = factory.Dict({})
    approved_by = None

    @classmethod
    def _create(
        cls,
        model_class,
        *,
        applicant,
        work_order,
        applications,
        reason,
        submitted,
        approvers,
        approved_by,
    ):
        from tickets import services

        ticket = services.create_ticket(
            applicant=applicant,
            work_order=work_order,
            application_names=[app.name for app in applications],
            reason=reason,
        )
        if submitted or approved_by is not None:
            services.submit_ticket(ticket=ticket, actor=applicant, approvers=approvers)
        if approved_by is not None:
            services.approve_ticket(ticket=ticket, approver=approved_by)
        ticket.refresh_from_db()
        return ticket


class AuditEventFactory(factory.django.DjangoModelFactory):
    """An audit event as a service would record it (names copied, no foreign keys needed).
    `created_at` is always "now" on insert (auto_now_add); tests that need other times move
    it with a queryset update."""

    class Meta:
        model = "audit.AuditEvent"

    action = "redeploy.requested"
    outcome = "SUCCESS"
    actor_username = factory.Sequence(lambda n: f"user{n}")
    ticket_no = factory.Sequence(lambda n: f"20240101{n:06d}")
    application_name = "web"
    cluster_name = "prod"
    namespace = "default"
    deployment_name = "web"
    message = ""


class RedeployOperationFactory(factory.django.DjangoModelFactory):
    """A QUEUED redeploy as request_redeploy leaves it (without queueing a task)."""

    class Meta:
        model = "redeploy.RedeployOperation"

    requested_by = factory.SubFactory(UserFactory)
    application_name = "web"
    namespace = "shop"
    deployment_name = "web"
    cluster_name = ""


class RedeployTargetFactory(factory.django.DjangoModelFactory):
    """A redeploy record (one Deployment restarted in one cluster), written directly: SUCCEEDED
    just now unless told otherwise. Traits: `failed=True`, `running=True` (rolling, no result).
    The application's name is the operation's: `operation__application_name="shop"`."""

    class Meta:
        model = "redeploy.RedeployTarget"

    class Params:
        failed = factory.Trait(
            state="FAILED", success=False, message="Operation failed err: simulated"
        )
        running = factory.Trait(state="ROLLING", success=None, finished_at=None)

    operation = factory.SubFactory(RedeployOperationFactory)
    cluster_name = "prod"
    namespace = factory.SelfAttribute("operation.namespace")
    deployment_name = factory.SelfAttribute("operation.deployment_name")
    state = "SUCCEEDED"
    success = True
    operated_at = factory.LazyFunction(timezone.now)
    finished_at = factory.SelfAttribute("operated_at")


class TicketRecordFactory(factory.django.DjangoModelFactory):
    """A ticket row in any state with chosen timestamps, written directly (no services, no
    entries, no Redis): for reads that only count tickets. `created_at` overrides the
    auto_now_add time."""

    class Meta:
        model = "tickets.Ticket"

    ticket_no = factory.Sequence(lambda n: f"REC{n:08d}")
    applicant = factory.SubFactory(UserFactory)
    work_order = factory.SubFactory(RedeployWorkOrderFactory)
    reason = "Pick up the new configuration"
    state = "NEW"
    created_at = None

    @classmethod
    def _create(cls, model_class, *args, created_at=None, **kwargs):
        ticket = super()._create(model_class, *args, **kwargs)
        if created_at is not None:
            model_class.objects.filter(pk=ticket.pk).update(created_at=created_at)
            ticket.created_at = created_at
        return ticket


class NoticeChannelFactory(factory.django.DjangoModelFactory):
    """A default chat channel (no work order); give `robot` (tests/robot_receivers.py) for its
    address and secret."""

    class Meta:
        model = "tickets.NoticeChannel"

    class Params:
        robot = None

    name = factory.Sequence(lambda n: f"channel{n}")
    medium = "DINGTALK"
    work_order = None
    webhook_url = factory.LazyAttribute(lambda c: c.robot.url if c.robot else "")
    secret = factory.LazyAttribute(lambda c: c.robot.secret if c.robot else "")
    language = "en"


class NoticeProfileFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "tickets.NoticeProfile"
        django_get_or_create = ("user",)

    user = factory.SubFactory(UserFactory)
