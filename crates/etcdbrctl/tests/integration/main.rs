//! The integration tests of the binary, in one test binary (each binary links the whole
//! dependency tree; one per crate keeps link time and disk down): every subcommand end to end against real etcd and real stores, the server and clusters, the corruption table and the binary's fault rows.

mod common;

mod api_auth;
mod chart;
mod cli;
mod cluster;
mod compact;
mod compression;
mod copy;
mod corruption;
mod encryption;
mod faults;
mod initialize;
mod leases;
mod pitr;
mod providers;
mod restore;
mod server;
mod verify;
mod wrapper;
