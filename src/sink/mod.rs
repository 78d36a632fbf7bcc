//! Where checkpoints go once sized and decided: the control FIFO back to
//! the save side, the status line on stderr, and the rate limit every
//! repeated warning goes through. (The CSV file is written by
//! `crate::row::write`, beside the format it writes.)

pub mod control;
pub mod status;
pub mod warn;
