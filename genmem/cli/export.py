"""``genmem export``: a run's per-example results as a CSV or Parquet table."""
import click

from ..errors import GenmemError
from ..results import read_result, write_csv, write_parquet


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Write the table as CSV to this path.")
@click.option("--parquet", "parquet_path", type=click.Path(dir_okay=False),
              help="Write the table as Parquet to this path (needs pyarrow).")
def export(file, csv_path, parquet_path):
    """Write one row per example of a results FILE: index, label, M, its standard error, in/out log p, every view."""
    if not (csv_path or parquet_path):
        raise GenmemError("nothing to do: pass --csv OUT and/or --parquet OUT")
    result = read_result(file)
    if not result.complete:
        raise GenmemError(f"{file} holds an unfinished run; finish it with the same 'genmem kfold' command first")
    for path, write in ((csv_path, write_csv), (parquet_path, write_parquet)):
        if path:
            write(result, path)
            click.echo(f"wrote {path} ({result.n_examples} rows)")
