"""What the tests, the benchmark (bench/) and the demo (examples/demo.py) share; no pytest in here.

- `tests.harness.servers`: private Prosody and ejabberd processes on loopback (standard library only).
- `tests.harness.clients`: XMPP users (slixmpp) and `login`, the one way to log a user in.
- `tests.harness.parts`: the parts around the component: constants, bots on loopback, its config, metrics.

Nothing is re-exported here: importing `tests.harness.servers` or `tests.harness.clients` does not import the
component.
"""
