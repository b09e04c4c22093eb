"""`python -m pkpo_trl.evaluation`: the same as `pkpo-eval`."""

from .cli import main

main()
