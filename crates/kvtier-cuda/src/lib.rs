//! kvtier-cuda (placeholder, filled in by its issue).
