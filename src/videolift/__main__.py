"""``python -m videolift``: the ``videolift`` command, for environments whose scripts are not on PATH."""

from videolift.cli import main

main()
