"""Thin adapters for the event-loop frameworks Motor supports."""
