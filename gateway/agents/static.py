"""The agent the settings describe, and :class:`SettingsHooks`: the hooks of a gateway without a database.

``GATEWAY_AGENT__GREETING``, ``…__SYSTEM_PROMPT``, ``…__VOICE``, ``…__CORRECTIONS``,
``…__TRANSFER_NUMBER`` and ``GATEWAY_WEBHOOK__URL`` make one agent (:func:`settings_profile`);
with ``GATEWAY_DATABASE__ENABLED=false`` it answers every number and its ``call.completed`` is
posted with in-memory retries (no outbox).
The database's resolver (:mod:`gateway.agents.resolver`) uses the same agent for unknown numbers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from gateway.agents.profile import AgentProfile, CallSummary
from gateway.conversation.corrections import Corrections

if TYPE_CHECKING:
    from gateway.config import GatewaySettings


def settings_profile(settings: GatewaySettings, corrections: Corrections | None = None) -> AgentProfile:
    """The agent of ``settings``; ``corrections`` defaults to the settings' literal table.

    A Spanish agent (``language=es``) left with the default English greeting greets in Spanish."""
    from gateway.config_groups import AgentSettings
    from gateway.conversation.language import LINES

    greeting = settings.agent.greeting
    if settings.agent.language == "es" and greeting == AgentSettings.model_fields["greeting"].default:
        greeting = LINES["es"]["greeting"]
    return AgentProfile(
        greeting=greeting,
        language=settings.agent.language,
        system_prompt=settings.agent.system_prompt,
        voice=settings.agent.voice,
        corrections=corrections if corrections is not None else Corrections(settings.agent.corrections),
        transfer_number=settings.agent.transfer_number,
        webhook_url=settings.webhook.url,
    )


class WebhookQueue(Protocol):
    """Posts a JSON body in the background (:class:`gateway.after_call.webhook.WebhookSender`)."""

    def submit(self, url: str, payload: dict[str, Any]) -> Any:
        """Start delivering ``payload`` to ``url``; never raises."""
        ...


class SettingsHooks:
    """:class:`~gateway.conversation.deps.CallHooks` and :class:`~gateway.agents.profile.AgentDirectory`
    for a gateway without a database: the settings' agent answers every number, and
    ``call.completed`` is posted to ``GATEWAY_WEBHOOK__URL`` through ``webhooks``.

    Args:
        settings: the gateway settings.
        webhooks: the app's webhook sender (shared ``httpx`` client, retries in memory).
    """

    def __init__(self, settings: GatewaySettings, webhooks: WebhookQueue) -> None:
        self.settings = settings
        self.webhooks = webhooks
        self.profile = settings_profile(settings)

    async def profile_for(self, call_sid: str, from_: str, to: str, resumed: bool = False) -> AgentProfile:
        """Always the settings' agent."""
        return self.profile

    def call_moved(self, call_sid: str) -> None:
        """Nothing is kept per call here."""

    async def resolve(self, to: str | None) -> AgentProfile:
        """Always the settings' agent."""
        return self.profile

    async def profile_for_agent(self, call_sid: str, from_: str, to: str, agent_id: int | None) -> AgentProfile:
        """The settings' agent for ``agent_id`` ``None`` (there is no other).

        Raises:
            LookupError: an agent id was given (agents by id need the database).
        """
        if agent_id is not None:
            raise LookupError(f"no agent {agent_id}: agents by id need the database (GATEWAY_DATABASE__ENABLED)")
        return self.profile

    async def call_ended(self, summary: CallSummary) -> None:
        """Post the webhook in the background (retried in memory); never raises."""
        if summary.profile.webhook_url:
            self.webhooks.submit(summary.profile.webhook_url, summary.webhook_payload())
