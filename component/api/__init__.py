"""The send API: programs (bots first) send stanzas and iqs through the component. Off unless [api] listen.

`server` holds the HTTP routes (/v1/stanzas, /v1/iq) and starts them through `component.http_server`;
`iq` waits for the answers to the iqs sent through /v1/iq.
"""
