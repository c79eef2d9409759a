"""`python -m turnkit` runs the CLI."""

from turnkit.cli import main

main()
