"""The one seam through which services enqueue Celery tasks.

Tasks import the services they wrap, never the reverse: a service names the task it wants
(each tasks module registers its tasks under those names, imported by its app's `ready()`),
and this module finds and publishes it. Eager mode (no broker: tests, the demo) is honoured,
which Celery's send_task would not do.
"""

from celery import current_app


def enqueue(name: str, *, kwargs: dict, **options):
    """Publish the task registered as `name` with `kwargs` (apply_async `options` as given)."""
    return current_app.tasks[name].apply_async(kwargs=kwargs, **options)
