"""All factories of the suite."""

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

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
