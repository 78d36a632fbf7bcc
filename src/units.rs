//! TODO(skeleton): filled in by the core work (issue 2).
