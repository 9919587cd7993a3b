//! The etcdbr engine: everything between etcd and the object store.
//!
//! - [`compress`]: the gzip, zlib and LZW codecs and their name suffixes.
//! - [`delta_format`]: the delta snapshot JSON with its sha256 trailer.
//! - [`gc`]: the Exponential and LimitBased retention policies as pure plans.

pub mod compress;
pub mod delta_format;
pub mod gc;
