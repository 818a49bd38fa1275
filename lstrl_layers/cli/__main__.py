"""``python -m lstrl_layers.cli``: the ``lstrl`` command."""

from . import main

raise SystemExit(main())
