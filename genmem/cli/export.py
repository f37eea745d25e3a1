"""``genmem export``: a run's per-example results as a CSV or Parquet table."""
import click

from ..errors import GenmemError
from ..outputs import atomic_path, claim, output_lock
from ..results import write_csv, write_parquet
from .runs import finished_run


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Write the table as CSV to this path.")
@click.option("--parquet", "parquet_path", type=click.Path(dir_okay=False),
              help="Write the table as Parquet to this path (needs pyarrow).")
@click.option("--force", is_flag=True, help="Replace existing output files (a table records no run to match).")
def export(file, csv_path, parquet_path, force):
    """Write one row per example of a results FILE: index, label, M, its standard error, in/out log p, every view."""
    if not (csv_path or parquet_path):
        raise GenmemError("nothing to do: pass --csv OUT and/or --parquet OUT")
    result = finished_run(file)
    outputs = [(path, option, write) for path, option, write in ((csv_path, "--csv", write_csv),
                                                                (parquet_path, "--parquet", write_parquet)) if path]
    for path, option, _ in outputs:  # a CSV or Parquet table carries no identity: an existing file needs --force
        claim(path, None, force=force, inputs=[file], option=option)
    for path, _, write in outputs:
        with output_lock(path), atomic_path(path) as tmp:
            write(result, tmp)
        click.echo(f"wrote {path} ({result.n_examples} rows)")
