<?php
// The PHP echo bot, accepting only requests signed by the component (bot.signing_secret).
//   WEBHOOK_SECRET=whsec_... php -S 127.0.0.1:8080 examples/signed_echo_bot.php

// --- verify the Standard Webhooks signature (these are the lines the README shows) ---
$secret = base64_decode(substr(getenv('WEBHOOK_SECRET'), strlen('whsec_')));
$id = $_SERVER['HTTP_WEBHOOK_ID'] ?? '';
$timestamp = $_SERVER['HTTP_WEBHOOK_TIMESTAMP'] ?? '';
$post_data = file_get_contents('php://input');
$expected = 'v1,' . base64_encode(hash_hmac('sha256', "$id.$timestamp.$post_data", $secret, true));
$valid = false;
foreach (explode(' ', $_SERVER['HTTP_WEBHOOK_SIGNATURE'] ?? '') as $given) {
    $valid = $valid || hash_equals($expected, $given);
}
if (!$valid || abs(time() - (int)$timestamp) > 300) {
    http_response_code(401);
    exit;
}
// --- then answer as usual ---

$received = json_decode($post_data)->body;
header('Content-Type: application/json');
echo json_encode(array(
        'body' => "Did you say $received?"
));
