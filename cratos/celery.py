import os
import threading

from celery import Celery, Task
from django.db import close_old_connections

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cratos.settings")


class CratosTask(Task):
    """Without a broker, tasks may run in a background thread of the web process.

    The zero-setup demo has no worker: running a redeploy inline would hold the request until
    the rollout ends, so with TASKS_IN_THREADS the page returns at once and shows progress.
    """

    def apply_async(self, args=None, kwargs=None, **options):
        from django.conf import settings

        if not (self.app.conf.task_always_eager and settings.TASKS_IN_THREADS):
            return super().apply_async(args, kwargs, **options)

        def run():
            try:
                self.apply(args, kwargs, task_id=options.get("task_id"))
            finally:
                close_old_connections()

        timer = threading.Timer(options.get("countdown") or 0, run)
        timer.daemon = True
        timer.start()
        return None


app = Celery("cratos", task_cls=CratosTask)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
