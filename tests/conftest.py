"""Shared test fixtures. This folder is on sys.path, so `import xmpp_servers` works from every test."""
