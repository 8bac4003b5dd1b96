"""The examples. The bots run as scripts (`python examples/echo_bot.py`); the demo, which uses the tests' server
harness, as a module from the repository's root (`python -m examples.demo`)."""
