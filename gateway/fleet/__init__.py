"""Gateways that share calls: the Redis registry, the choice of a gateway per call, the SIGTERM drain.

See docs/scale-out.md. The conversation side of a resumed call is :mod:`gateway.conversation.resume`.
"""
