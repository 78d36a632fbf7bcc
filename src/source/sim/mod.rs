//! A simulated domain, for running and testing everything without Xen.
//!
//! [`workload`] says how fast the guest dirties memory over time (a pure
//! function of time and seed, so every policy sees the same guest);
//! [`domain`] turns that into what each checkpoint costs; [`drive`] runs
//! the checkpoint loop either in real time through the real C library and
//! FIFOs, or in virtual time for fast, deterministic comparisons;
//! [`oracle`] is the offline optimum those comparisons are measured against.

pub mod domain;
pub mod drive;
pub mod oracle;
pub mod workload;
