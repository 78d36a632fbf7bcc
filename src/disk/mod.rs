//! Disk replication sources (DRBD): per-checkpoint disk bytes.
