//! The `peers` daemon as a library: the data directory, a running [`Daemon`],
//! its control socket, and status tables. The `peers` binary is a thin CLI over
//! this module.

#[cfg(unix)]
pub mod control;
mod data_dir;
mod members;
mod run;
mod sending;
mod table;

pub use data_dir::{DataDir, DataDirLock, MAX_TRUSTED, TrustedDevice};
pub use run::{Daemon, DaemonOptions};
pub use sending::{MAX_SENDS, SendState};
pub use table::render_status;
