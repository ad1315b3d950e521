import subprocess
import sys


def test_registry_import_does_not_import_tensorflow_or_django():
    code = (
        "import sys, models, models.registry, models.synthetic, models.metrics; "
        "models.registry.kinds(); "
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'; "
        "assert 'django' not in sys.modules, 'django imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
