"""``genmem merge``: combine the shards of a K-fold run (``genmem kfold --shard I/N``) into its results file."""
import click

from ..memorization import merge as merge_shards


@click.command()
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Replace an existing OUT of another run.")
def merge(out, force):
    """Merge the finished shard files OUT.shard-I-of-N of one run into OUT.

    Every shard must hold the same run (same settings and data); units that
    are in no finished shard are named. The shard files stay in place.
    """
    result = merge_shards(out, force=force)
    m = result.memorization
    click.echo(f"wrote {out} ({result.meta['processes']['shards']} shards, {result.done.size} units)")
    click.echo(f"memorization M (nats): mean {m.mean():.4g}, max {m.max():.4g}")
    click.echo(f"next: genmem top {out}")
