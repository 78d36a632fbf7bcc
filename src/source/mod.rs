//! Sources of records.
