"""Event notifications in the way of MongooseIM's mod_event_pusher HTTP backend: callbacks decide, pushers send."""
