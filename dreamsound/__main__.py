"""``python -m dreamsound``: the command-line tool."""

from dreamsound.cli import main

main()
