"""What the service keeps: conversations and turns (SQLite or PostgreSQL) and the
uploaded documents, synced to the documents folder."""
