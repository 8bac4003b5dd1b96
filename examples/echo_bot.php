<?php
// The echo bot of Prosody's mod_component_http documentation, unchanged: it works as is against
// xmpp-http-component. Run it with PHP's built-in server (Debian package php-cli):
//
//     php -S 127.0.0.1:8080 examples/echo_bot.php
//
// and set the component's bot.url to "http://127.0.0.1:8080/".

// Receive and decode message JSON
$post_data = file_get_contents('php://input');
$received = json_decode($post_data)->body;

// Send response
header('Content-Type: application/json');
echo json_encode(array(
        'body' => "Did you say $received?"
));

?>
