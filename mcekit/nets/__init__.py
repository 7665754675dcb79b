"""Encoders and decoders; importing the submodules registers them."""
