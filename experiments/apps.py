from django.apps import AppConfig


class ExperimentsConfig(AppConfig):
    name = "experiments"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        import recsite.checks  # noqa: F401  (registers the deployment checks)
        from experiments.observability import metrics_dir_prune

        metrics_dir_prune()  # the sample files of processes that are gone leave /metrics' sums
