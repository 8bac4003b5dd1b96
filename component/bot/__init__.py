"""The bot flow: stanzas POSTed to HTTP bots (bridge.py), the HTTP client (client.py), routes and signatures."""
