"""The SMS gateway: one-time codes for strong real-name login, kept in an outbox."""
