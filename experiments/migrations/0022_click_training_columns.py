"""Clicks carry their impression's arm, time and training columns (``Click.of``, services/clicks.py).

A training step read a page of an arm's clicks by joining the clicks past its cursor with every impression of the
arm: a hash join that grows with the arm's whole log (92 ms at 180,000 impressions, docs/benchmarks.md). With the
columns on the click it is one range of the ``(arm_id, id)`` index. Impressions never change, so the copies never
go stale. Existing clicks are filled from their impressions; a click whose impression is gone (its day's partition
was dropped by a version without the clicks clean-up) can no longer be trained on or exported, and is removed.
The fill is one UPDATE of every click in the migration's transaction (34,562 clicks over 180,000 impressions in
3.6 s with the rest of ``migrate``): on a large log, run it in a maintenance window.
"""

import django.contrib.postgres.fields
from django.db import migrations, models

COLUMNS = (
    ("arm_id", "bigint"), ("served_at", "timestamp with time zone"), ("user_id", "bigint"), ("item_id", "bigint"),
    ("position", "integer"), ("hist_clicked", "bigint[]"), ("hist_impressed", "bigint[]"),
)
REQUIRED = ("arm_id", "served_at", "user_id", "item_id", "position")

FORWARD = [
    "ALTER TABLE experiments_click " + ", ".join(f"ADD COLUMN {name} {kind}" for name, kind in COLUMNS),
    "DELETE FROM experiments_click c WHERE NOT EXISTS "
    "(SELECT 1 FROM experiments_impression i WHERE i.id = c.impression_id)",
    "UPDATE experiments_click c SET " + ", ".join(f"{name} = i.{name}" for name, _ in COLUMNS)
    + " FROM experiments_impression i WHERE i.id = c.impression_id",
    "ALTER TABLE experiments_click " + ", ".join(f"ALTER COLUMN {name} SET NOT NULL" for name in REQUIRED),
    "CREATE INDEX click_arm_id ON experiments_click (arm_id, id)",
]
BACKWARD = [
    "DROP INDEX click_arm_id",
    "ALTER TABLE experiments_click " + ", ".join(f"DROP COLUMN {name}" for name, _ in COLUMNS),
]


def _array():
    return django.contrib.postgres.fields.ArrayField(base_field=models.BigIntegerField(), blank=True, null=True,
                                                     size=None)


class Migration(migrations.Migration):

    dependencies = [
        ('experiments', '0021_guardrail_bounds'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(sql=FORWARD, reverse_sql=BACKWARD)],
            state_operations=[
                migrations.AddField(model_name='click', name='arm_id', field=models.BigIntegerField(default=0),
                                    preserve_default=False),
                migrations.AddField(model_name='click', name='served_at', field=models.DateTimeField(default=None),
                                    preserve_default=False),
                migrations.AddField(model_name='click', name='user_id', field=models.BigIntegerField(default=0),
                                    preserve_default=False),
                migrations.AddField(model_name='click', name='item_id', field=models.BigIntegerField(default=0),
                                    preserve_default=False),
                migrations.AddField(model_name='click', name='position', field=models.IntegerField(default=0),
                                    preserve_default=False),
                migrations.AddField(model_name='click', name='hist_clicked', field=_array()),
                migrations.AddField(model_name='click', name='hist_impressed', field=_array()),
                migrations.AddIndex(model_name='click',
                                    index=models.Index(fields=['arm_id', 'id'], name='click_arm_id')),
            ],
        ),
    ]
