-- Durable, audited note creates (201 only after the commit is fsync'd).
request = createNote
