"""Events for integration clients (api.md, "Events for integration clients"): the feed and its
Server-Sent Events, the published event schemas, webhooks and the NATS JetStream relay.

Everything here starts from `items.feed_items`, the one form an event leaves the service in,
with personal data replaced by markers. It depends on the domain's event types and the store,
never on the API or the read models.
"""
