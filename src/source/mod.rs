//! Sources of checkpoint records: the stats FIFO of a patched libxenguest
//! (or of the simulator, which runs the same C library), and the simulated
//! domain itself.

pub mod sim;
pub mod stats_fifo;
