"""`python -m remcli` (and `torchrun -m remcli`) runs the CLI."""

from remcli.cli.main import main

main()
