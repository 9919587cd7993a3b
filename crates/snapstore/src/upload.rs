//! The chunking policy of uploads: how big each part is so the provider's part limit is never
//! exceeded, whatever the object size. The upload itself is OpenDAL's chunked, concurrent
//! writer ([`crate::provider::opendal`]).

use crate::config::Provider;

/// Largest number of parts a provider accepts in one object (with a margin, as the original
/// uses `size/9999` for S3 and OSS, `size/999` for Swift's 1000 segments).
#[must_use]
pub fn max_parts(provider: Provider) -> u64 {
    match provider {
        Provider::S3 | Provider::Ecs | Provider::Ocs | Provider::Oss => 9_999,
        Provider::Abs => 49_999,
        Provider::Gcs => 9_999,
        Provider::Swift => 999,
        Provider::Local | Provider::Failed => u64::MAX,
    }
}

/// Part size granularity: GCS resumable uploads need multiples of 256 KiB; every other
/// provider is happy with them too.
pub const CHUNK_ALIGN: u64 = 256 * 1024;

/// The chunk size for an object of about `size_hint` bytes: at least `min_chunk`, large enough
/// that the object fits in [`max_parts`], rounded up to [`CHUNK_ALIGN`].
#[must_use]
pub fn chunk_size(provider: Provider, min_chunk: u64, size_hint: Option<u64>) -> u64 {
    let parts = max_parts(provider);
    let needed = size_hint.map_or(0, |s| s.div_ceil(parts));
    min_chunk.max(needed).div_ceil(CHUNK_ALIGN) * CHUNK_ALIGN
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn chunk_sizes_respect_part_limits() {
        assert_eq!(chunk_size(Provider::S3, 5 * MIB, None), 5 * MIB);
        assert_eq!(chunk_size(Provider::S3, 5 * MIB, Some(100 * MIB)), 5 * MIB);
        // 100 GiB on S3: 10.24 MiB parts, rounded to 256 KiB.
        let c = chunk_size(Provider::S3, 5 * MIB, Some(100 * 1024 * MIB));
        assert!(
            c * 9_999 >= 100 * 1024 * MIB && c.is_multiple_of(CHUNK_ALIGN),
            "{c}"
        );
        // Swift's 1000 segments: 8 GiB needs more than 8 MiB segments.
        let c = chunk_size(Provider::Swift, 5 * MIB, Some(8 * 1024 * MIB));
        assert!(c * 999 >= 8 * 1024 * MIB, "{c}");
        // An odd minimum is aligned.
        assert_eq!(
            chunk_size(Provider::Gcs, 5 * MIB + 1, None),
            5 * MIB + CHUNK_ALIGN
        );
    }
}
