<?php
// A bot written for Prosody's mod_rest in callback mode (rest_callback_content_type = "application/json"),
// using only what mod_rest documents; it works unchanged against xmpp-http-component. Run it with PHP's
// built-in server (Debian package php-cli):
//
//     php -S 127.0.0.1:8080 examples/rest_bot.php
//
// and set the component's bot.url to "http://127.0.0.1:8080/" (with bot.stanzas = ["message", "iq"] for the
// iq part).

$stanza = json_decode(file_get_contents('php://input'), true);
if (!is_array($stanza)) {
    http_response_code(400);  // the sender gets a bad-request error
    exit;
}

function reply($object) {
    header('Content-Type: application/json');
    echo json_encode($object);
    exit;
}

$kind = $stanza['kind'] ?? '';
if ($kind === 'message') {
    $body = $stanza['body'] ?? null;
    if ($body === null) {
        http_response_code(204);  // a typing notification, a receipt...: accepted, nothing to say
        exit;
    }
    if ($body === 'xml') {  // full control: one stanza as XML
        header('Content-Type: application/xmpp+xml');
        echo '<message type="chat"><body>Yes, this is bot</body></message>';
        exit;
    }
    if (isset($stanza['oob_url'])) {
        reply(['body' => 'Nice picture', 'oob_url' => $stanza['oob_url']]);
    }
    reply(['body' => "You said: $body", 'state' => 'active']);
}
if ($kind === 'iq' && isset($stanza['version'])) {
    reply(['version' => ['name' => 'rest_bot.php', 'version' => '1.0']]);
}
if ($kind === 'iq' && isset($stanza['ping'])) {
    http_response_code(204);  // accepted: the iq gets its empty result, the pong
    exit;
}
http_response_code(501);  // anything else: feature-not-implemented
