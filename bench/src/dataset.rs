//! The dataset: keys of pseudo-random printable values, loaded in transactions.

use std::time::Instant;

use testkit::Etcd;

/// A value of `size` printable pseudo-random bytes (base64 alphabet): compresses to about 75%,
/// like typical etcd payloads, unlike a run of one byte.
pub(crate) fn random_value(seed: u64, size: usize) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALPHABET[(x % 64) as usize]
        })
        .collect()
}

/// Puts `keys` keys of `size` bytes, 16 concurrent transactions of 128 puts each.
pub(crate) async fn load(etcd: &Etcd, keys: usize, size: usize) -> anyhow::Result<()> {
    use futures::StreamExt;
    let started = Instant::now();
    let client = etcd.client().await?;
    futures::stream::iter((0..keys).step_by(128))
        .map(|start| {
            let mut c = client.clone();
            async move {
                let ops: Vec<_> = (start..(start + 128).min(keys))
                    .map(|i| {
                        testkit::etcd_client::TxnOp::put(
                            format!("/bench/key-{i:08}"),
                            random_value(i as u64, size),
                            None,
                        )
                    })
                    .collect();
                c.txn(testkit::etcd_client::Txn::new().and_then(ops))
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<()>, _>>()?;
    let status = etcd.client().await?.status().await?;
    println!(
        "loaded {keys} keys of {size} B in {:.1}s; db size {:.1} MB; revision {}; data dir {:.1} GB on disk",
        started.elapsed().as_secs_f64(),
        status.db_size() as f64 / 1e6,
        etcd.revision().await,
        crate::process::disk_bytes(etcd.data_dir()) as f64 / 1e9
    );
    Ok(())
}

/// Reports the dataset a kept `--data-dir` already holds.
pub(crate) async fn reused(etcd: &Etcd) -> anyhow::Result<()> {
    let status = etcd.client().await?.status().await?;
    println!(
        "reusing the dataset in {}: db size {:.1} MB; revision {}; data dir {:.1} GB on disk",
        etcd.data_dir().display(),
        status.db_size() as f64 / 1e6,
        etcd.revision().await,
        crate::process::disk_bytes(etcd.data_dir()) as f64 / 1e9
    );
    Ok(())
}
