import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_the_offline_mathematics_imports_without_django_or_obp():
    code = (
        "import sys; import experiments.offline.estimators, experiments.offline.obd, "
        "experiments.offline.reward_model, experiments.offline.obd_validation, experiments.offline.replay, "
        "experiments.offline.evaluation; "
        "leaked = sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'obp', 'tensorflow')); "
        "assert not leaked, leaked"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
