"""Ray Serve: the app builder, the ingress and its HTTP dialects, the variant scorers."""
