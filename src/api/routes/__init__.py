"""One router per resource of api.md."""
