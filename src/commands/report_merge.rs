//! `boomerang report merge`: merges the parts of a split run and says what it wrote.

use std::path::PathBuf;

use super::manifest_parts;
use crate::audit::merge;

/// The parts' reports in row order, and the merged report to write (it must not exist).
#[derive(Debug, Clone)]
pub struct MergeConfig {
    pub reports: Vec<PathBuf>,
    pub output: PathBuf,
}

/// `boomerang report merge`: merges and prints what it wrote. The manifests of `augment` or
/// `enhance` parts ([`manifest_parts`]) are merged as such; anything else is a report.
pub fn run(config: &MergeConfig) -> anyhow::Result<()> {
    if config
        .reports
        .first()
        .is_some_and(|first| manifest_parts::is_part_manifest(first))
    {
        let summary = manifest_parts::merge(&config.reports, &config.output)?;
        println!(
            "merged the {} parts of the sharded `{}` run: {} rows into {}; removed the parts' manifests and records",
            summary.parts,
            summary.command,
            summary.rows,
            summary.output.display()
        );
        return Ok(());
    }
    let summary = merge(&config.reports, &config.output)?;
    for part in &summary.unrecorded {
        println!(
            "note: no run.json beside {}: rows cut from its end could not be detected",
            part.display()
        );
    }
    if let Some(record) = &summary.run_record {
        println!(
            "the parts are all {} parts of one sharded run: wrote its run record {} (private, like the report)",
            summary.parts,
            record.display()
        );
    }
    println!(
        "merged {} rows from {} reports into {} (chain head {})",
        summary.rows,
        summary.parts,
        summary.output.display(),
        summary.chain_head
    );
    Ok(())
}
