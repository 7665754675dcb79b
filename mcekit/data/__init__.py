"""Data: image sources (registered as ``datasets``) and the group-transformed wrapper."""
