"""``python -m astroquery_mastbulk`` is the ``mastbulk`` command."""

from .cli import main

main()
