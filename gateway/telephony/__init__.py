"""The Twilio carrier: the only package that knows Twilio (voice webhook, Media Streams, REST, pacing).

``routes`` (voice webhook and media stream), ``signature`` (which URL Twilio signs, per-call stream
tokens), ``rest`` (hang up, transfer), ``playback`` (20 ms μ-law frames paced in real time, marks,
``clear``) and ``transport`` (Media Streams as a :class:`gateway.conversation.transport.Transport`).
"""
