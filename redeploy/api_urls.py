from rest_framework.routers import SimpleRouter

from .api import RedeployViewSet

router = SimpleRouter(use_regex_path=False)
router.register("redeploys", RedeployViewSet, basename="api-redeploy")

urlpatterns = [*router.urls]
