//! Where checkpoints go once sized and decided: the CSV file, the control
//! FIFO back to the save side, the status line on stderr, and the rate
//! limit every repeated warning goes through.

pub mod control;
pub mod csv;
pub mod status;
pub mod warn;
