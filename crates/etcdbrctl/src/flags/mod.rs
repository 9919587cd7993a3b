//! Flag groups shared by subcommands: what the user typed, parsed and checked, not acted on.
//! Each group turns itself into the engine's options.

pub mod etcd;
pub mod restoration;
pub mod snapshotter;
pub mod store;
pub mod target;
pub mod values;
