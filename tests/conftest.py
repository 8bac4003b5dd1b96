"""Shared by every test. `tests` is a package: tests import what they share from `tests.harness` (servers,
clients, bots and other parts); the fixtures of the integration tests are in tests/integration/conftest.py."""
