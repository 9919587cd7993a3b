//! `etcdbrctl list`: the store's backup sets, oldest first, as a table or JSON.

use chrono::{DateTime, SecondsFormat, Utc};
use clap::{Args, ValueEnum};
use serde_json::{Value, json};
use snapstore::inventory::{Inventory, Item, Role, SetSummary, inventory};

use crate::flags::store::{StoreFlags, open_checked};

/// How `list` and `verify` print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// A table for people.
    Table,
    /// One JSON document, for scripts and monitoring.
    Json,
}

/// Flags of `list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(flatten)]
    store: StoreFlags,
}

/// Lists the store's backup sets.
///
/// # Errors
/// Invalid store flags, or the store cannot be listed.
pub async fn run(args: ListArgs) -> anyhow::Result<()> {
    let config = args.store.to_required_config()?;
    let store = open_checked(&config).await?;
    let inv = inventory(&store.list_sized().await?)?;
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&to_json(&inv))?),
        Output::Table => print!("{}", table(&inv)),
    }
    Ok(())
}

/// RFC 3339 in UTC, whole seconds (as snapshot names record them).
pub fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The compression a suffix names, as the original's policies are called.
pub fn compression(suffix: &str) -> &'static str {
    etcdbr::compress::Compression::from_suffix(suffix).map_or("unknown", |c| c.name())
}

/// `1.5 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn note(role: &Role) -> String {
    match role {
        Role::Applied => String::new(),
        Role::Overlap(from) => format!("overlap: applied from {}", from.get()),
        Role::Covered => "covered by another delta: not applied".into(),
        Role::AfterGap => "after a gap: not restorable".into(),
    }
}

fn row(set: &str, item: &Item, note: &str) -> [String; 9] {
    let s = &item.snapshot;
    [
        set.to_owned(),
        s.snap_name.clone(),
        format!("{}..={}", s.start_revision.get(), s.last_revision.get()),
        time(s.created_on),
        bytes(item.size),
        if s.encrypted {
            format!("{}+age", compression(&s.compression_suffix))
        } else {
            compression(&s.compression_suffix).to_owned()
        },
        if s.is_final { "yes" } else { "" }.to_owned(),
        if item.chunks > 0 {
            item.chunks.to_string()
        } else {
            String::new()
        },
        note.to_owned(),
    ]
}

/// The table `list` prints: a row per object, a summary line per set.
fn table(inv: &Inventory) -> String {
    if inv.sets.is_empty() && inv.unused.is_empty() && inv.excluded.is_empty() {
        return "The store holds no snapshots.\n".into();
    }
    let mut rows: Vec<[String; 9]> = vec![
        [
            "SET",
            "OBJECT",
            "REVISIONS",
            "CREATED (UTC)",
            "SIZE",
            "COMPRESSION",
            "FINAL",
            "CHUNKS",
            "NOTE",
        ]
        .map(str::to_owned),
    ];
    let latest = inv.sets.len();
    for (i, set) in inv.sets.iter().enumerate() {
        let n = (i + 1).to_string();
        let mark = if i + 1 == latest { "latest set" } else { "" };
        rows.push(row(&n, &set.full, mark));
        for (d, role) in &set.deltas {
            rows.push(row(&n, d, &note(role)));
        }
    }
    for item in &inv.unused {
        rows.push(row("-", item, "in no set: not restorable"));
    }
    for item in &inv.excluded {
        let why = item.snapshot.excluded.as_deref().unwrap_or_default();
        rows.push(row("-", item, &format!("excluded from restores: {why}")));
    }
    let widths: Vec<usize> = (0..9)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out.push('\n');
    for (i, set) in inv.sets.iter().enumerate() {
        out.push_str(&format!("{}\n", summary(i + 1, set)));
    }
    out
}

fn summary(n: usize, set: &SetSummary) -> String {
    let gap = set
        .gap
        .as_ref()
        .map(|g| format!("; {g}"))
        .unwrap_or_default();
    format!(
        "set {n}: restores revisions {}..={}, {} .. {}, {} deltas, {}{gap}",
        set.first_revision.get(),
        set.last_revision.get(),
        time(set.first_time),
        time(set.last_time),
        set.deltas.len(),
        bytes(set.size())
    )
}

fn item_json(item: &Item) -> Value {
    let s = &item.snapshot;
    json!({
        "name": s.snap_name,
        "key": s.key(),
        "kind": s.kind.as_str(),
        "startRevision": s.start_revision.get(),
        "lastRevision": s.last_revision.get(),
        "createdOn": time(s.created_on),
        "size": item.size,
        "compression": compression(&s.compression_suffix),
        "encrypted": s.encrypted,
        "final": s.is_final,
        "chunks": item.chunks,
    })
}

/// The JSON `list --output=json` prints.
fn to_json(inv: &Inventory) -> Value {
    let sets: Vec<Value> = inv
        .sets
        .iter()
        .map(|set| {
            let deltas: Vec<Value> = set
                .deltas
                .iter()
                .map(|(d, role)| {
                    let mut v = item_json(d);
                    let (r, from) = match role {
                        Role::Applied => ("applied", None),
                        Role::Overlap(f) => ("overlap", Some(f.get())),
                        Role::Covered => ("covered", None),
                        Role::AfterGap => ("afterGap", None),
                    };
                    v["role"] = json!(r);
                    v["appliedFrom"] = json!(from);
                    v
                })
                .collect();
            json!({
                "full": item_json(&set.full),
                "deltas": deltas,
                "firstRevision": set.first_revision.get(),
                "lastRevision": set.last_revision.get(),
                "firstTime": time(set.first_time),
                "lastTime": time(set.last_time),
                "size": set.size(),
                "gap": set.gap.as_ref().map(ToString::to_string),
            })
        })
        .collect();
    json!({
        "sets": sets,
        "unused": inv.unused.iter().map(item_json).collect::<Vec<_>>(),
        "excluded": inv
            .excluded
            .iter()
            .map(|i| {
                let mut v = item_json(i);
                v["reason"] = json!(i.snapshot.excluded);
                v
            })
            .collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
    }
}
