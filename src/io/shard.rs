//! Sharded runs: part K of N of a dataset walk, for a Slurm job array or a Kubernetes Indexed
//! Job whose tasks write into one shared OUT.
//!
//! A part is a contiguous block of the sorted walk (entries `K*M/N .. (K+1)*M/N` of M): the
//! merged report is then the parts' rows concatenated in part order, already in walk order, and
//! the images of one folder (one class, one person) mostly stay in one part. Round-robin would
//! balance uneven images a little better, but the merge would have to re-derive the walk order
//! from report paths.
//!
//! Names of a part's private files: `OUT.part-0003-of-0016.report.csv` beside OUT (and its
//! `OUT.part-0003-of-0016.run.json`); part numbers count from 0 and have at least 4 digits.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Part `index` of `count` (`index < count`, `count >= 1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shard {
    index: u32,
    count: u32,
}

/// A shard value that is not `K/N` with `0 <= K < N`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ShardError(pub String);

impl Shard {
    pub fn new(index: u32, count: u32) -> Result<Shard, ShardError> {
        if count == 0 {
            return Err(ShardError(format!(
                "{index}/{count}: the number of parts must be at least 1"
            )));
        }
        if index >= count {
            return Err(ShardError(format!(
                "{index}/{count}: part numbers count from 0, so part {index} of {count} does not exist (0..={})",
                count - 1
            )));
        }
        Ok(Shard { index, count })
    }

    pub fn index(&self) -> u32 {
        self.index
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    /// The entries of a walk of `total` entries this part processes: a contiguous block.
    pub fn range(&self, total: usize) -> std::ops::Range<usize> {
        let at = |k: u32| (total as u128 * u128::from(k) / u128::from(self.count)) as usize;
        at(self.index)..at(self.index + 1)
    }

    /// `part-0003-of-0016`: zero-padded to at least 4 digits (more when N needs them), so the
    /// parts' file names sort in part order.
    pub fn tag(&self) -> String {
        let width = (self.count - 1).to_string().len().max(4);
        format!(
            "part-{:0width$}-of-{:0width$}",
            self.index,
            self.count,
            width = width
        )
    }

    /// The report of this part for a run whose report would be `report`: the tag goes before
    /// `.report.csv` (`OUT.report.csv` → `OUT.part-0003-of-0016.report.csv`), else before the
    /// last extension (`r.csv` → `r.part-0003-of-0016.csv`), else at the end.
    pub fn part_report_path(&self, report: &Path) -> PathBuf {
        let name = report
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tag = self.tag();
        let named = if let Some(stem) = name.strip_suffix(".report.csv").filter(|s| !s.is_empty()) {
            format!("{stem}.{tag}.report.csv")
        } else if let Some((stem, extension)) = name.rsplit_once('.').filter(|(s, _)| !s.is_empty())
        {
            format!("{stem}.{tag}.{extension}")
        } else {
            format!("{name}.{tag}")
        };
        report.with_file_name(named)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = ShardError;

    /// `K/N`, decimal.
    fn from_str(text: &str) -> Result<Shard, ShardError> {
        let Some((index, count)) = text.trim().split_once('/') else {
            return Err(ShardError(format!(
                "`{text}` is not K/N (part K of N parts, K from 0 to N-1, e.g. 3/16)"
            )));
        };
        let number = |part: &str, what: &str| {
            part.trim().parse::<u32>().map_err(|_| {
                ShardError(format!(
                    "`{text}`: {what} `{part}` is not a whole number (K/N, e.g. 3/16)"
                ))
            })
        };
        Shard::new(number(index, "K")?, number(count, "N")?)
    }
}

/// What `--shard` asks for: a given part, or `auto` (from the job array's environment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardRequest {
    Fixed(Shard),
    /// Read the part from the environment (`--shards N` gives the number of parts where the
    /// environment does not: Kubernetes' `JOB_COMPLETION_INDEX`).
    Auto,
}

impl FromStr for ShardRequest {
    type Err = ShardError;

    fn from_str(text: &str) -> Result<ShardRequest, ShardError> {
        if text.trim() == "auto" {
            Ok(ShardRequest::Auto)
        } else {
            text.parse().map(ShardRequest::Fixed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        assert_eq!("3/16".parse::<Shard>().unwrap(), Shard::new(3, 16).unwrap());
        assert_eq!("0/1".parse::<Shard>().unwrap().tag(), "part-0000-of-0001");
        for bad in ["16/16", "1/0", "-1/4", "a/4", "3", "3/", "/4", "1/2/3"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        assert_eq!("auto".parse::<ShardRequest>().unwrap(), ShardRequest::Auto);
    }

    #[test]
    fn blocks_cover_the_walk_once_in_order() {
        for total in [0usize, 1, 5, 12, 1000] {
            for count in [1u32, 2, 3, 4, 7, 16] {
                let mut next = 0;
                for index in 0..count {
                    let range = Shard::new(index, count).unwrap().range(total);
                    assert_eq!(range.start, next);
                    next = range.end;
                }
                assert_eq!(next, total);
            }
        }
    }

    #[test]
    fn part_names() {
        let shard = Shard::new(3, 16).unwrap();
        assert_eq!(
            shard.part_report_path(Path::new("/d/out.report.csv")),
            Path::new("/d/out.part-0003-of-0016.report.csv")
        );
        assert_eq!(
            shard.part_report_path(Path::new("r.csv")),
            Path::new("r.part-0003-of-0016.csv")
        );
        assert_eq!(Shard::new(7, 12000).unwrap().tag(), "part-00007-of-12000");
    }
}
