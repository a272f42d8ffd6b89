"""One live call, whatever the carrier: listening, turn-taking, replies, transcript, actions.

Imports no FastAPI, SQLAlchemy or Twilio: the call talks to its caller through a
:class:`~gateway.conversation.transport.Transport` and to its collaborators through the Protocols
in :mod:`gateway.conversation.deps`.
"""
