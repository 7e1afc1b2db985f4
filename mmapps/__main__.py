"""`python -m mmapps` runs the CLI."""

from mmapps.cli.main import main

main()
