//! remus-ckpt: see and steer what every Xen Remus/COLO checkpoint costs.
//!
//! Data flows one way, and the modules are laid out along it:
//!
//! ```text
//! source (FIFO from Xen | simulated domain | trace)  -> record  -> size
//!        -> policy -> sinks (CSV, control FIFO, status line, plot/report)
//! ```

pub mod ffi;
pub mod fifo;
pub mod runtime_dir;
pub mod trust;
pub mod units;
pub mod xen_install;

pub mod disk;
pub mod metrics;
pub mod pipeline;
pub mod policy;
pub mod record;
pub mod row;
pub mod sink;
pub mod size;
pub mod source;

pub mod plot;
pub mod report;

pub mod cli;
pub mod cmd;
