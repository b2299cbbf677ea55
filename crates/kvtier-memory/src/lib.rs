//! kvtier-memory (placeholder, filled in by its issue).
