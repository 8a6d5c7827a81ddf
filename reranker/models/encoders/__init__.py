"""Encoder family modules (cross-encoders): one per family, each a difference from a relative."""
