"""`python -m dlexp` runs the same command as `dlexp`."""

from dlexp.cli.main import main

main()
