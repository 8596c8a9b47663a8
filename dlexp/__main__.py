"""`python -m dlexp` runs the same command as `dlexp`."""

from dlexp.cli import main

main()
