"""xmpp-http-component: an XMPP external component (XEP-0114) that serves HTTP bots."""

__version__ = "0.1.0"
