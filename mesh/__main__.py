"""``python -m mesh`` runs the ``meshnode`` command."""

from .cli import main

main()
