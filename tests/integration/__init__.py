"""Integration tests: real Prosody and ejabberd on loopback, real HTTP bots, the component in-process."""
