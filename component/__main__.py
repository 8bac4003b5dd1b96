"""`python -m component`: the same entry point as the `xmpp-http-component` script."""

from component.cli import main

raise SystemExit(main())
