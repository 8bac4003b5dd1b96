-- Prosody for docker-compose.yml: a throwaway server to try the component with. No TLS, plain-text
-- passwords accepted: for a demo on your own machine only, never for production.
-- The component secret comes from the environment (Prosody reads $XMPP_COMPONENT_SECRET as ENV_XMPP_COMPONENT_SECRET).

modules_enabled = {
	"roster"; "saslauth"; "disco"; "ping"; "version"; "time"; "uptime";
}
modules_disabled = { "s2s"; "dialback"; "tls" } -- no federation, no certificates

authentication = "internal_hashed"
storage = "internal"
log = { info = "*console" }

c2s_require_encryption = false
allow_unencrypted_plain_auth = true

c2s_ports = { 5222 }
s2s_ports = { }
http_ports = { }
https_ports = { }
component_ports = { 5347 }
component_interfaces = { "*" } -- the component runs in another container (Prosody's default is loopback only)

VirtualHost "localhost"

Component "bot.localhost"
	component_secret = ENV_XMPP_COMPONENT_SECRET
