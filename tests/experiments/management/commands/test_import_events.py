import pytest
from django.core.management import CommandError, call_command

from experiments.models import BusinessEvent, Impression
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


def test_a_file_with_a_type_column_is_imported_as_business_events(tmp_path, capsys):
    from tests.experiments.services.test_bulk_events import events_file

    catalogue_make(n=5)
    experiment_make()
    (tmp_path / "impressions.csv").write_text(rows(10))
    (tmp_path / "business.csv").write_text(events_file())
    call_command("import_events", str(tmp_path / "impressions.csv"), "--no-progress")
    call_command("import_events", str(tmp_path / "business.csv"))
    call_command("import_events", str(tmp_path / "business.csv"))

    out, err = capsys.readouterr()
    assert "imported 5 business events (0 skipped" in out
    assert "imported 1 business events (4 skipped" in out
    assert "B/s" in err or "100%" in err  # the progress bar, on stderr
    assert BusinessEvent.objects.count() == 6
