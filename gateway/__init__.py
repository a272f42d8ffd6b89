"""Telephony gateway: Twilio voice webhook + Media Streams WebSocket per call."""

from gateway.app import create_app

__all__ = ["create_app"]
