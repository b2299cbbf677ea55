//! kvtier-disk (placeholder, filled in by its issue).
