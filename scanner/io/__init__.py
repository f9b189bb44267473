"""Doors in and out: model import/export, input specs, trusted data."""
