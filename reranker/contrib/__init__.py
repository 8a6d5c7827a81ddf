"""Ready-made plugins for the ``plugin`` backend, each behind its own optional dependency."""
