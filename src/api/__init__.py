"""The HTTP API (FastAPI): thin models at the edge, the rules stay in channel_domain."""
