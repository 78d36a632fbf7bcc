//! Interval policies.
