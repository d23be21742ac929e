"""``perfmodel check published``: the cost model against the shipped measured training runs."""
import click

from .options import to_json


@click.group()
def check():
    """Check predictions against measured runs."""


@check.command()
@click.option("--json", "as_json", is_flag=True, help="print JSON (errors and MAPE as fractions)")
@click.option("--id", "ids", multiple=True, help="only these rows (runs.csv id; repeatable)")
def published(as_json, ids):
    """Predict every row of perfmodel/published/runs.csv in the unit it measured: prediction, measured,
    signed error, predicted fit in memory; MAPE overall and per source; rows not modelled and why."""
    from ..published.check import check_published, report_text, to_json_dict
    report = check_published(ids=set(ids) or None)
    click.echo(to_json(to_json_dict(report)) if as_json else report_text(report))
