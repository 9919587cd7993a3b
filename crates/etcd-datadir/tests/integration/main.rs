//! The integration tests of etcd-datadir, in one test binary (each binary links the whole
//! dependency tree; one per crate keeps link time and disk down): the on-disk format against real etcd 3.4 and 3.5: golden WAL and .snap bytes, real databases, restored data dirs that etcd boots, compaction.

mod compact;
mod golden;
mod real_db;
mod restore_boot;
