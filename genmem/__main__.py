"""``python -m genmem``: the command line (what torchrun starts: ``torchrun ... -m genmem kfold ...``)."""
from .cli import main

main()
