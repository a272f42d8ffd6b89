"""Browser carriers: the ``/phone`` WebRTC softphone and the ``/ws/conversation`` WebSocket voice API.

Both are :class:`~gateway.conversation.transport.Transport` s behind the conversation's seam
(:mod:`gateway.browser.rtc`, :mod:`gateway.browser.ws_transport`), so a browser call gets the same
turn-taking, barge-in, backchannels, tools, recording, Redis state, extraction and webhooks as a
phone call; :mod:`gateway.browser.call` picks the agent and answers ``end_conversation`` with the
post-call extraction; :mod:`gateway.browser.protocol` is the shared JSON event protocol.
"""
