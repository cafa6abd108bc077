"""The HTTP service: /v1/recommend on a bundle, with Redis-backed user contexts and result caching."""
