import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_stats_and_charts_import_without_django():
    code = (
        "import sys; import experiments.stats, experiments.charts, experiments.charts_interleaving; "
        "import experiments.stats.interleaving, experiments.stats.preference, experiments.simulation.interleaving; "
        "import experiments.stats.serving_health; "
        "assert 'django' not in sys.modules, sorted(m for m in sys.modules if m.startswith('django'))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
