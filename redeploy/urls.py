app_name = "redeploy"

urlpatterns = []
