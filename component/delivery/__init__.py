"""Queued delivery (`bot.delivery = "queued"`): every stanza for the bot is written to a durable queue first, then
POSTed in order per conversation and retried until it succeeds or `bot.retry_for` passes. policy.py decides what
is retried and after how long (pure); store.py is the SQLite queue in `[state] dir`; sender.py runs the deliveries."""
