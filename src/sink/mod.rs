//! Where checkpoints go once sized and decided: the CSV file, the control
//! FIFO back to the save side, and the status line on stderr.

pub mod control;
pub mod csv;
pub mod status;
