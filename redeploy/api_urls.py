from rest_framework.routers import SimpleRouter

from .api import PodDeletionViewSet, RedeployViewSet

router = SimpleRouter(use_regex_path=False)
router.register("redeploys", RedeployViewSet, basename="api-redeploy")
router.register("pod-deletions", PodDeletionViewSet, basename="api-pod-deletion")

urlpatterns = [*router.urls]
