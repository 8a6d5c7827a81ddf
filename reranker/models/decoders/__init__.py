"""Decoder family modules: the shared body (:mod:`.stack`) and one module per family."""
