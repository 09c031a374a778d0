"""PostgreSQL infrastructure: the event recorder, the log reader, migrations, the database.

The aggregates never import this package; the application is wired to it by `settings`.
"""
