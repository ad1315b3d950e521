import json

from django.core.management.base import BaseCommand, CommandError

from experiments.offline.estimators import ESTIMATORS
from experiments.offline.services import OfflineEvaluationError, offline_estimate_record, offline_evaluate


class Command(BaseCommand):
    help = (
        "Estimates an arm's CTR per shown item from the experiment's logged impressions (off-policy: "
        "IPS, SNIPS, DM, DR with bootstrap intervals); the arm needs no traffic of its own."
    )

    def add_arguments(self, parser):
        parser.add_argument("--experiment", required=True, help="experiment slug")
        parser.add_argument("--target-arm", required=True, help="name of the arm to evaluate")
        parser.add_argument(
            "--kind", default=None, help="if the experiment has no such arm: evaluate a new, untrained arm of this kind"
        )
        parser.add_argument("--params", type=json.loads, default=None, help="hyper-parameters (JSON) for --kind")
        parser.add_argument("--estimators", nargs="+", default=list(ESTIMATORS), choices=ESTIMATORS)
        parser.add_argument("--n-bootstrap", type=int, default=1000)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--exclude-target-traffic", action="store_true", help="use only other arms' logs")
        parser.add_argument("--logging-arms", nargs="+", default=None, help="use only these arms' logs")
        parser.add_argument("--json", action="store_true", help="print the result as JSON")
        parser.add_argument(
            "--no-save", action="store_true", help="do not store the result (by default the dashboard shows it)"
        )

    def handle(self, *args, **opts):
        try:
            result = offline_evaluate(
                experiment_slug=opts["experiment"],
                target_arm=opts["target_arm"],
                kind=opts["kind"],
                params=opts["params"],
                estimators=opts["estimators"],
                include_target_traffic=not opts["exclude_target_traffic"],
                n_bootstrap=opts["n_bootstrap"],
                seed=opts["seed"],
                logging_arms=opts["logging_arms"],
            )
        except OfflineEvaluationError as exc:
            raise CommandError(str(exc)) from exc
        if not opts["no_save"]:
            offline_estimate_record(evaluation=result, kind=opts["kind"])
        if opts["json"]:
            self.stdout.write(json.dumps(result.as_dict(), indent=2))
            return
        live = (
            "no live traffic"
            if result.live_ctr is None
            else (f"live CTR {100 * result.live_ctr:.3f}% ({result.live_clicks}/{result.live_impressions})")
        )
        self.stdout.write(
            f"{result.experiment}/{result.arm} (model v{result.model_version}): {live}; offline estimate from "
            f"{result.rows} logged impressions over {result.candidates} candidates "
            f"(effective sample size {result.effective_sample_size:.0f}):"
        )
        for e in result.estimates:
            self.stdout.write(
                f"  {e.estimator:>5}  {100 * e.value:.3f}%  [{100 * e.ci_low:.3f}%, {100 * e.ci_high:.3f}%]"
            )
        for note in result.notes:
            self.stdout.write(f"  note: {note}")
