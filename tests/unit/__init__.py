"""Unit tests: the component's parts alone, no server, no network."""
