"""Who answers a call: agent profiles, their resolution from the dialled number, the demo business's defaults."""
