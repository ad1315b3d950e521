import pytest
from django.core.management import CommandError, call_command

from experiments.models import Impression
from tests.experiments.services.test_bulk import rows
from tests.support.serving import catalogue_make, experiment_make

pytestmark = pytest.mark.django_db


def test_the_command_imports_a_file(tmp_path, capsys):
    catalogue_make(n=5)
    experiment_make()
    path = tmp_path / "events.csv"
    path.write_text(rows(6))
    call_command("import_events", str(path))
    assert Impression.objects.count() == 18
    assert "imported 18 impressions, 6 clicks" in capsys.readouterr().out


def test_a_missing_file_is_a_command_error(tmp_path):
    with pytest.raises(CommandError, match="no such file"):
        call_command("import_events", str(tmp_path / "nope.csv"))
