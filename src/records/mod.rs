//! What a run leaves behind: the hash-chained report, the run record (run.json) and the fsync'd
//! CSV log that augment and enhance write.

mod append;
pub mod cells;
pub mod csv_log;
pub mod report;
