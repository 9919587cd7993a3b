//! The integration tests of the engine, in one test binary (each binary links the whole
//! dependency tree; one per crate keeps link time and disk down): the snapshotter against real etcd, the fault matrix, GC, compatibility with the original's objects, connections.

mod chain_model;
mod common;

mod compat;
mod connection;
mod copy;
mod faults;
mod gc;
mod gc_model;
mod holds;
mod snapshotter;
