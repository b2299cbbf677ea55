//! kvtier-offload (placeholder, filled in by its issue).
