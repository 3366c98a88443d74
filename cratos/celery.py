import gc
import os
import threading

from celery import Celery, Task
from celery.signals import (
    beat_init,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_init,
    worker_ready,
)
from django.db import close_old_connections, connections

from cratos.startup import refuse_unsafe_keys

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
                connections.close_all()  # this thread ends here

        timer = threading.Timer(options.get("countdown") or 0, run)
        timer.daemon = True
        timer.start()
        return None


app = Celery("cratos", task_cls=CratosTask)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
@beat_init.connect
def _refuse_unsafe_keys(**kwargs):
    refuse_unsafe_keys()


@task_prerun.connect
@task_postrun.connect
def _recycle_database_connections(task=None, **kwargs):
    # As between two requests: a connection too old or broken is dropped, a good one kept.
    # Eager tasks run inside the caller's request or transaction: leave that one alone.
    if not getattr(task.request, "is_eager", False):
        close_old_connections()


@worker_ready.connect
@worker_process_init.connect
def _freeze_startup_objects(**kwargs):
    # Django, Celery and the Kubernetes client's models leave ~140,000 objects that live as long
    # as the process; a full garbage collection walking them all pauses a redeploy batch for
    # ~60 ms. Frozen, collections walk only what tasks allocate.
    gc.freeze()
