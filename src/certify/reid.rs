//! Re-identification attack: an attacker holds the input images' embeddings (the gallery) and
//! looks each output up by nearest neighbour. Anonymization works when outputs do not lead back
//! to their own source more often than chance.

use serde::Serialize;

use super::metric::{Embedding, Metric, MetricError};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReidError {
    #[error("the re-identification gallery is empty")]
    EmptyGallery,
    #[error("probe {probe} names source {source_index}, but the gallery has {gallery} entries")]
    Source {
        probe: usize,
        source_index: usize,
        gallery: usize,
    },
    #[error("more probes ({probes}) than gallery entries ({gallery}): probe i must come from gallery entry i")]
    TooManyProbes { probes: usize, gallery: usize },
    #[error("probe {probe}: {source}")]
    Metric { probe: usize, source: MetricError },
}

/// One output to re-identify and the index of the gallery entry it was made from.
#[derive(Debug, Clone, Copy)]
pub struct Probe<'a> {
    pub source: usize,
    pub embedding: &'a Embedding,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reidentification {
    /// Share of probes whose nearest gallery entry is their own source.
    pub top1_rate: f64,
    /// Share of probes whose source is among their five nearest gallery entries.
    pub top5_rate: f64,
    /// What a matcher guessing at random would score: 1 / gallery size.
    pub chance: f64,
    /// Per probe, the 1-based rank of its source among the gallery by distance; ties count
    /// against the attacker (an entry as close as the source ranks before it).
    pub ranks: Vec<usize>,
}

/// Ranks each probe's source in the gallery.
pub fn reidentify(
    metric: Metric,
    gallery: &[Embedding],
    probes: &[Probe],
) -> Result<Reidentification, ReidError> {
    if gallery.is_empty() {
        return Err(ReidError::EmptyGallery);
    }
    let mut ranks = Vec::with_capacity(probes.len());
    for (i, probe) in probes.iter().enumerate() {
        let own = gallery.get(probe.source).ok_or(ReidError::Source {
            probe: i,
            source_index: probe.source,
            gallery: gallery.len(),
        })?;
        let wrap = |source| ReidError::Metric { probe: i, source };
        let own_distance = metric.distance(probe.embedding, own).map_err(wrap)?;
        let mut rank = 1;
        for (j, entry) in gallery.iter().enumerate() {
            if j != probe.source
                && metric.distance(probe.embedding, entry).map_err(wrap)? <= own_distance
            {
                rank += 1;
            }
        }
        ranks.push(rank);
    }
    let rate_within = |k: usize| {
        if ranks.is_empty() {
            0.0
        } else {
            ranks.iter().filter(|&&r| r <= k).count() as f64 / ranks.len() as f64
        }
    };
    Ok(Reidentification {
        top1_rate: rate_within(1),
        top5_rate: rate_within(5),
        chance: 1.0 / gallery.len() as f64,
        ranks,
    })
}

/// [`reidentify`] when probe `i` was made from gallery entry `i`.
pub fn top1_rate(
    metric: Metric,
    gallery: &[Embedding],
    probes: &[Embedding],
) -> Result<Reidentification, ReidError> {
    if probes.len() > gallery.len() {
        return Err(ReidError::TooManyProbes {
            probes: probes.len(),
            gallery: gallery.len(),
        });
    }
    let probes: Vec<Probe> = probes
        .iter()
        .enumerate()
        .map(|(source, embedding)| Probe { source, embedding })
        .collect();
    reidentify(metric, gallery, &probes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha20Rng;
    use rand_distr::StandardNormal;

    fn random(rng: &mut ChaCha20Rng, n: usize, dim: usize) -> Vec<Embedding> {
        (0..n)
            .map(|_| {
                Embedding::new(
                    (0..dim)
                        .map(|_| rng.sample::<f32, _>(StandardNormal))
                        .collect(),
                )
                .unwrap()
            })
            .collect()
    }

    #[test]
    fn identical_probes_are_all_reidentified() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let gallery = random(&mut rng, 50, 16);
        let r = top1_rate(Metric::Euclidean, &gallery, &gallery).unwrap();
        assert_eq!(r.top1_rate, 1.0);
        assert!(r.ranks.iter().all(|&k| k == 1));
        assert_eq!(r.chance, 0.02);
    }

    #[test]
    fn unrelated_probes_score_about_chance() {
        // 200 galleries of 20 against unrelated random probes: mean top-1 rate ~ 1/20 and mean
        // rank ~ 10.5, as for a random guess.
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let (mut rate, mut rank, trials) = (0.0, 0.0, 200);
        for _ in 0..trials {
            let gallery = random(&mut rng, 20, 8);
            let probes = random(&mut rng, 20, 8);
            let r = top1_rate(Metric::Cosine, &gallery, &probes).unwrap();
            rate += r.top1_rate / f64::from(trials);
            rank += r.ranks.iter().sum::<usize>() as f64 / 20.0 / f64::from(trials);
        }
        assert!((0.035..0.065).contains(&rate), "rate {rate}");
        assert!((9.5..11.5).contains(&rank), "mean rank {rank}");
    }

    #[test]
    fn ranks_count_closer_entries_and_ties_against_the_attacker() {
        let g = |v: f32| Embedding::new(vec![v]).unwrap();
        let gallery = [g(0.0), g(1.0), g(2.0), g(3.0)];
        let probe = g(1.9);
        let probes = [
            Probe {
                source: 0,
                embedding: &probe,
            },
            Probe {
                source: 2,
                embedding: &probe,
            },
            Probe {
                source: 3,
                embedding: &gallery[1],
            },
        ];
        let r = reidentify(Metric::Euclidean, &gallery, &probes).unwrap();
        // source 0 at 1.9: entries 1 (0.9), 2 (0.1) and 3 (1.1) are closer -> rank 4; source 2 is nearest;
        // probe 1.0 from source 3 (2.0 away): 1 (0.0), 0 and 2 (1.0 each) are closer -> rank 4.
        assert_eq!(r.ranks, vec![4, 1, 4]);
        assert!((r.top1_rate - 1.0 / 3.0).abs() < 1e-12);
        // Ranks 4, 1, 4 are all within the top five.
        assert_eq!(r.top5_rate, 1.0);
        let tie = [Probe {
            source: 0,
            embedding: &g(0.5),
        }];
        assert_eq!(
            reidentify(Metric::Euclidean, &gallery[..2], &tie)
                .unwrap()
                .ranks,
            vec![2]
        );
    }

    #[test]
    fn bad_inputs_are_errors() {
        let g = vec![Embedding::new(vec![1.0]).unwrap()];
        assert_eq!(
            top1_rate(Metric::Euclidean, &[], &[]),
            Err(ReidError::EmptyGallery)
        );
        let two = vec![g[0].clone(), g[0].clone()];
        assert!(matches!(
            top1_rate(Metric::Euclidean, &g, &two),
            Err(ReidError::TooManyProbes { .. })
        ));
        let probe = [Probe {
            source: 5,
            embedding: &g[0],
        }];
        assert!(matches!(
            reidentify(Metric::Euclidean, &g, &probe),
            Err(ReidError::Source { .. })
        ));
        let wide = Embedding::new(vec![1.0, 2.0]).unwrap();
        let probe = [Probe {
            source: 0,
            embedding: &wide,
        }];
        assert!(matches!(
            reidentify(Metric::Euclidean, &g, &probe),
            Err(ReidError::Metric { .. })
        ));
    }
}
