"""Bridges to other systems (optional extras): nextoken.integrations.ray."""
