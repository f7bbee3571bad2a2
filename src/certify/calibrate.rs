//! Calibration of an embedder's operating points on a folder-per-identity set: the distances of
//! genuine pairs (two images of one identity) and impostor pairs (images of two identities), the
//! threshold at a target false-match rate (FMR) with the false non-match rate (FNMR) there, the
//! measured FMR/FNMR of any operating point, the hash that names the set, and the edit that
//! records calibrated points in a spec file with its comments kept.
//!
//! The rule is the specs' own: a pair is "the same identity" when its distance is **below** an
//! operating point's max-distance. So the FMR at max-distance `t` is the share of impostor pairs
//! with distance `< t`, and the FNMR the share of genuine pairs with distance `>= t`.
//!
//! Pure computation: no printing, no files but the text handed in.

use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::metric::{Embedding, Metric, MetricError};
use super::spec::{EmbedderSpec, OperatingPoint, SpecError};

/// The FMR levels `boomerang calibrate` reports, with the operating point name each is written
/// under.
pub const FMR_LEVELS: [(f64, &str); 2] = [(1e-3, "fmr-1e-3"), (1e-2, "fmr-1e-2")];

/// Percentiles shown for each distribution.
pub const PERCENTILES: [u32; 7] = [1, 5, 25, 50, 75, 95, 99];

#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    #[error("comparing embeddings: {0}")]
    Metric(#[from] MetricError),
    #[error("embedder spec {path} is not valid TOML: {message}")]
    Toml { path: PathBuf, message: String },
    #[error("embedder spec {path} has no [[operating-point]] array of tables to add to")]
    NoPointArray { path: PathBuf },
    #[error("embedder spec {path} already has an operating point `{name}`; pass --replace to overwrite it with this calibration")]
    PointExists { path: PathBuf, name: String },
    #[error("the edited embedder spec would not be valid, nothing written: {0}")]
    Invalid(#[from] SpecError),
}

/// The genuine and impostor distances of a set, each sorted ascending.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PairDistances {
    pub genuine: Vec<f32>,
    pub impostor: Vec<f32>,
}

/// Every pair of `samples` (identity index, embedding): same identity = genuine, else impostor.
pub fn pair_distances(
    metric: Metric,
    samples: &[(usize, &Embedding)],
) -> Result<PairDistances, MetricError> {
    let mut distances = PairDistances::default();
    for (i, (identity_a, a)) in samples.iter().enumerate() {
        for (identity_b, b) in &samples[i + 1..] {
            let distance = metric.distance(a, b)?;
            if identity_a == identity_b {
                distances.genuine.push(distance);
            } else {
                distances.impostor.push(distance);
            }
        }
    }
    distances.genuine.sort_by(f32::total_cmp);
    distances.impostor.sort_by(f32::total_cmp);
    Ok(distances)
}

/// Count, extremes and nearest-rank percentiles of sorted distances.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Distribution {
    pub count: usize,
    pub min: f32,
    /// `(percentile, value)` for each of [`PERCENTILES`], nearest-rank.
    pub percentiles: Vec<(u32, f32)>,
    pub max: f32,
}

/// `None` for no distances.
pub fn distribution(sorted: &[f32]) -> Option<Distribution> {
    let (&min, &max) = (sorted.first()?, sorted.last()?);
    let n = sorted.len();
    let percentiles = PERCENTILES
        .iter()
        .map(|&p| {
            // Nearest rank: the smallest value with at least p % of the values at or below it.
            let rank = (p as usize * n).div_ceil(100).clamp(1, n);
            (p, sorted[rank - 1])
        })
        .collect();
    Some(Distribution {
        count: n,
        min,
        percentiles,
        max,
    })
}

/// An operating point's error rates on a set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rates {
    /// Impostor pairs called the same identity.
    pub false_matches: usize,
    pub impostor_pairs: usize,
    /// `false_matches / impostor_pairs`; `None` without impostor pairs.
    pub fmr: Option<f64>,
    /// Genuine pairs called different identities.
    pub false_non_matches: usize,
    pub genuine_pairs: usize,
    /// `false_non_matches / genuine_pairs`; `None` without genuine pairs.
    pub fnmr: Option<f64>,
}

fn rate(count: usize, of: usize) -> Option<f64> {
    (of > 0).then(|| count as f64 / of as f64)
}

/// The rates of a decision `same_identity(distance)` on `distances`.
pub fn rates(distances: &PairDistances, same_identity: impl Fn(f32) -> bool) -> Rates {
    let false_matches = distances
        .impostor
        .iter()
        .filter(|&&d| same_identity(d))
        .count();
    let false_non_matches = distances
        .genuine
        .iter()
        .filter(|&&d| !same_identity(d))
        .count();
    Rates {
        false_matches,
        impostor_pairs: distances.impostor.len(),
        fmr: rate(false_matches, distances.impostor.len()),
        false_non_matches,
        genuine_pairs: distances.genuine.len(),
        fnmr: rate(false_non_matches, distances.genuine.len()),
    }
}

/// The threshold found for one target FMR, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Threshold {
    /// The largest max-distance whose FMR on the set is at most the target.
    Resolved { max_distance: f32, rates: Rates },
    /// Fewer impostor pairs than `1 / target`: one false match more or less moves the FMR past
    /// the target, so the set cannot tell.
    TooFewImpostorPairs { impostor_pairs: usize, needed: u64 },
    /// More than the allowed share of impostor pairs are at distance 0 (the same picture under
    /// two identities?): no positive max-distance meets the target.
    ZeroDistance { impostor_pairs: usize },
}

/// One FMR level's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FmrLevel {
    /// The operating point name it is written under, e.g. `fmr-1e-2`.
    pub name: String,
    pub target_fmr: f64,
    pub threshold: Threshold,
}

/// Impostor pairs needed to resolve `target`: `ceil(1 / target)`.
pub fn pairs_needed(target: f64) -> u64 {
    // 1 / 1e-3 is 1000.0000000000001 or so in floating point; do not round that up to 1001.
    (1.0 / target - 1e-6).ceil().max(1.0) as u64
}

/// The largest max-distance `t` with `#{impostor d < t} / N <= target` (`target` in (0, 1)).
pub fn threshold_at_fmr(distances: &PairDistances, name: &str, target: f64) -> FmrLevel {
    let n = distances.impostor.len();
    let needed = pairs_needed(target);
    let threshold = if (n as u64) < needed {
        Threshold::TooFewImpostorPairs {
            impostor_pairs: n,
            needed,
        }
    } else {
        // At most `allowed` impostor pairs may fall below t: t is the (allowed+1)-th smallest
        // impostor distance (a larger t would let that pair through as well). n >= 1/target
        // makes allowed >= 1, and target < 1 makes allowed < n.
        let allowed = ((target * n as f64) + 1e-9).floor() as usize;
        let max_distance = distances.impostor[allowed.min(n - 1)];
        if max_distance > 0.0 {
            Threshold::Resolved {
                max_distance,
                rates: rates(distances, |d| d < max_distance),
            }
        } else {
            Threshold::ZeroDistance { impostor_pairs: n }
        }
    };
    FmrLevel {
        name: name.to_string(),
        target_fmr: target,
        threshold,
    }
}

/// The sha256 naming a calibration set: over one line `<file sha256>  <relative path>\n` per
/// image (as `sha256sum` prints them), sorted by relative path. `files` holds `(relative path,
/// file sha256 hex)`.
pub fn set_sha256(files: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = files.iter().collect();
    sorted.sort();
    let mut hasher = Sha256::new();
    for (path, sha) in sorted {
        hasher.update(sha.as_bytes());
        hasher.update(b"  ");
        hasher.update(path.as_bytes());
        hasher.update(b"\n");
    }
    hex::encode(hasher.finalize())
}

/// A decimal that reads back as the same `f32` and prints short (0.6, not 0.6000000238418579).
fn short_f64(value: f32) -> f64 {
    value.to_string().parse().unwrap_or(value as f64)
}

/// The spec text `text` (read from `path`) with `points` recorded as `[[operating-point]]`
/// tables, comments and layout of the rest kept. A point whose name is already there is refused
/// unless `replace`, which rewrites that table's keys in place. The result is validated as a spec
/// before it is returned.
pub fn write_points(
    text: &str,
    path: &Path,
    points: &[OperatingPoint],
    replace: bool,
) -> Result<String, CalibrateError> {
    use toml_edit::{value, ArrayOfTables, DocumentMut, Item, Table};
    let mut doc: DocumentMut =
        text.parse()
            .map_err(|e: toml_edit::TomlError| CalibrateError::Toml {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
    let item = doc
        .entry("operating-point")
        .or_insert(Item::ArrayOfTables(ArrayOfTables::new()));
    let array = item
        .as_array_of_tables_mut()
        .ok_or_else(|| CalibrateError::NoPointArray {
            path: path.to_path_buf(),
        })?;
    for point in points {
        let existing = array
            .iter()
            .position(|t| t.get("name").and_then(|n| n.as_str()) == Some(point.name.as_str()));
        if existing.is_some() && !replace {
            return Err(CalibrateError::PointExists {
                path: path.to_path_buf(),
                name: point.name.clone(),
            });
        }
        let mut fresh = Table::new();
        let table = match existing.and_then(|i| array.get_mut(i)) {
            Some(table) => table,
            None => &mut fresh,
        };
        table.insert("name", value(point.name.as_str()));
        table.remove("max-distance");
        table.remove("min-similarity");
        if let Some(d) = point.max_distance {
            table.insert("max-distance", value(short_f64(d)));
        }
        if let Some(s) = point.min_similarity {
            table.insert("min-similarity", value(short_f64(s)));
        }
        table.insert("provenance", value(point.provenance.as_str()));
        for (key, rate) in [
            ("measured-fmr", point.measured_fmr),
            ("measured-fnmr", point.measured_fnmr),
        ] {
            match rate {
                Some(r) => table.insert(key, value(r)),
                None => table.remove(key),
            };
        }
        for (key, count) in [
            ("genuine-pairs", point.genuine_pairs),
            ("impostor-pairs", point.impostor_pairs),
        ] {
            match count.and_then(|c| i64::try_from(c).ok()) {
                Some(c) => table.insert(key, value(c)),
                None => table.remove(key),
            };
        }
        match &point.calibration_sha256 {
            Some(sha) => table.insert("calibration-sha256", value(sha.as_str())),
            None => table.remove("calibration-sha256"),
        };
        if existing.is_none() {
            array.push(fresh);
        }
    }
    let edited = doc.to_string();
    EmbedderSpec::parse(&edited, path)?;
    Ok(edited)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(v: &[f32]) -> Embedding {
        Embedding::new(v.to_vec()).unwrap()
    }

    fn impostors(n: usize) -> PairDistances {
        PairDistances {
            genuine: vec![0.1, 0.2, 0.3, 0.5],
            impostor: (1..=n).map(|i| i as f32 / 100.0).collect(),
        }
    }

    #[test]
    fn pairs_split_by_identity_and_sort() {
        let (a, b, c) = (e(&[0.0, 0.0]), e(&[3.0, 4.0]), e(&[0.0, 1.0]));
        let d = pair_distances(Metric::Euclidean, &[(0, &a), (1, &b), (0, &c)]).unwrap();
        assert_eq!(d.genuine, vec![1.0]);
        let mut imp = d.impostor.clone();
        imp.sort_by(f32::total_cmp);
        assert_eq!(d.impostor, imp);
        assert_eq!(d.impostor.len(), 2);
        assert_eq!(d.impostor[1], 5.0);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<f32> = (1..=100).map(|i| i as f32).collect();
        let dist = distribution(&values).unwrap();
        assert_eq!((dist.count, dist.min, dist.max), (100, 1.0, 100.0));
        assert_eq!(dist.percentiles[0], (1, 1.0));
        assert_eq!(dist.percentiles[3], (50, 50.0));
        assert_eq!(dist.percentiles[6], (99, 99.0));
        assert_eq!(distribution(&[0.5]).unwrap().percentiles[0], (1, 0.5));
        assert!(distribution(&[]).is_none());
    }

    #[test]
    fn threshold_is_the_largest_meeting_the_target() {
        // 200 impostor distances 0.01..2.00; FMR 1e-2 allows 2 pairs below t: t = 0.03.
        let d = impostors(200);
        let level = threshold_at_fmr(&d, "fmr-1e-2", 1e-2);
        match level.threshold {
            Threshold::Resolved {
                max_distance,
                rates,
            } => {
                assert_eq!(max_distance, 0.03);
                assert_eq!(rates.false_matches, 2);
                assert_eq!(rates.fmr, Some(0.01));
                // genuine 0.1, 0.2, 0.3, 0.5 are all >= 0.03: all rejected.
                assert_eq!(rates.fnmr, Some(1.0));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn too_few_impostor_pairs_is_said_not_guessed() {
        let level = threshold_at_fmr(&impostors(999), "fmr-1e-3", 1e-3);
        assert_eq!(
            level.threshold,
            Threshold::TooFewImpostorPairs {
                impostor_pairs: 999,
                needed: 1000
            }
        );
        assert!(matches!(
            threshold_at_fmr(&impostors(1000), "fmr-1e-3", 1e-3).threshold,
            Threshold::Resolved { .. }
        ));
        assert_eq!(pairs_needed(1e-2), 100);
    }

    #[test]
    fn ties_at_the_threshold_do_not_exceed_the_target() {
        let d = PairDistances {
            genuine: vec![],
            impostor: vec![0.2; 100],
        };
        match threshold_at_fmr(&d, "x", 1e-2).threshold {
            Threshold::Resolved {
                max_distance,
                rates,
            } => {
                assert_eq!(max_distance, 0.2);
                assert_eq!(rates.false_matches, 0);
                assert_eq!(rates.fnmr, None);
            }
            other => panic!("{other:?}"),
        }
        let zero = PairDistances {
            genuine: vec![],
            impostor: vec![0.0; 100],
        };
        assert!(matches!(
            threshold_at_fmr(&zero, "x", 1e-2).threshold,
            Threshold::ZeroDistance { .. }
        ));
    }

    #[test]
    fn set_hash_is_order_independent_and_content_bound() {
        let a = ("a/1.jpg".to_string(), "00".repeat(32));
        let b = ("b/1.jpg".to_string(), "11".repeat(32));
        let h = set_sha256(&[a.clone(), b.clone()]);
        assert_eq!(h, set_sha256(&[b.clone(), a.clone()]));
        assert_ne!(h, set_sha256(std::slice::from_ref(&a)));
        let b2 = ("b/1.jpg".to_string(), "22".repeat(32));
        assert_ne!(h, set_sha256(&[a, b2]));
    }

    const SPEC: &str = r#"# top comment
name = "t"
onnx = "m.onnx"
input-name = "i"
output-name = "o"
input-size = [4, 4]
layout = "nchw"
channel-order = "rgb"
mean = [0.0, 0.0, 0.0]
std = [1.0, 1.0, 1.0]
metric = "euclidean"
default-operating-point = "same-person"

[alignment]
left-eye = [0.3, 0.3]
right-eye = [0.7, 0.3]

# the documented point
[[operating-point]]
name = "same-person"
max-distance = 0.6
provenance = "docs"
"#;

    fn point(name: &str, d: f32) -> OperatingPoint {
        OperatingPoint {
            name: name.into(),
            max_distance: Some(d),
            min_similarity: None,
            provenance: "calibrated".into(),
            measured_fmr: Some(0.01),
            measured_fnmr: Some(0.25),
            genuine_pairs: Some(4),
            impostor_pairs: Some(200),
            calibration_sha256: Some("ab".repeat(32)),
        }
    }

    #[test]
    fn measured_fields_are_validated() {
        let path = Path::new("/x/embedder.toml");
        for (field, bad, key) in [
            ("measured-fmr", "1.5", "operating-point[0].measured-fmr"),
            ("measured-fnmr", "-0.1", "operating-point[0].measured-fnmr"),
            (
                "calibration-sha256",
                "\"abc\"",
                "operating-point[0].calibration-sha256",
            ),
        ] {
            let text = SPEC.replace(
                "provenance = \"docs\"",
                &format!("provenance = \"docs\"\n{field} = {bad}"),
            );
            match EmbedderSpec::parse(&text, path) {
                Err(SpecError::Invalid { key: got, .. }) => assert_eq!(got, key),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn points_are_added_with_comments_kept_and_replaced_only_when_asked() {
        let path = Path::new("/x/embedder.toml");
        let text = write_points(SPEC, path, &[point("fmr-1e-2", 0.42)], false).unwrap();
        assert!(text.contains("# top comment") && text.contains("# the documented point"));
        let spec = EmbedderSpec::parse(&text, path).unwrap();
        let p = spec.operating_point(Some("fmr-1e-2")).unwrap();
        assert_eq!(p.max_distance, Some(0.42));
        assert_eq!(p.measured_fmr, Some(0.01));
        assert_eq!(p.impostor_pairs, Some(200));
        assert!(text.contains("max-distance = 0.42\n"), "{text}");
        assert!(matches!(
            write_points(&text, path, &[point("fmr-1e-2", 0.5)], false),
            Err(CalibrateError::PointExists { .. })
        ));
        let again = write_points(&text, path, &[point("fmr-1e-2", 0.5)], true).unwrap();
        let spec = EmbedderSpec::parse(&again, path).unwrap();
        assert_eq!(spec.operating_points.len(), 2);
        assert_eq!(
            spec.operating_point(Some("fmr-1e-2")).unwrap().max_distance,
            Some(0.5)
        );
        // Replacing the documented point keeps its comment.
        let replaced = write_points(SPEC, path, &[point("same-person", 0.55)], true).unwrap();
        assert!(replaced.contains("# the documented point"));
        let spec = EmbedderSpec::parse(&replaced, path).unwrap();
        assert_eq!(spec.operating_point(None).unwrap().max_distance, Some(0.55));
    }
}
