//! Identity embeddings and the distances between them.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricError {
    #[error("embeddings of different lengths ({0} and {1}) cannot be compared; were they made by the same embedder?")]
    Length(usize, usize),
    #[error("an embedding is all zeros, so its cosine similarity is undefined")]
    ZeroNorm,
    #[error("an embedding is empty")]
    Empty,
    #[error("embedding value {index} is {value}; the embedder produced a non-finite output")]
    NotFinite { index: usize, value: f32 },
}

/// How two embeddings are compared. Every metric is reported as a distance (smaller = more
/// alike); for cosine it is `1 - cosine similarity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    Euclidean,
    Cosine,
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Metric::Euclidean => "euclidean",
            Metric::Cosine => "cosine",
        })
    }
}

/// One face's identity vector, checked finite and non-empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Embedding(Vec<f32>);

impl Embedding {
    pub fn new(values: Vec<f32>) -> Result<Self, MetricError> {
        if values.is_empty() {
            return Err(MetricError::Empty);
        }
        if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(MetricError::NotFinite { index, value });
        }
        Ok(Self(values))
    }

    pub fn values(&self) -> &[f32] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The same direction with unit L2 norm.
    pub fn l2_normalized(&self) -> Result<Self, MetricError> {
        let norm = self
            .0
            .iter()
            .map(|&v| f64::from(v) * f64::from(v))
            .sum::<f64>()
            .sqrt();
        if norm == 0.0 {
            return Err(MetricError::ZeroNorm);
        }
        Ok(Self(
            self.0
                .iter()
                .map(|&v| (f64::from(v) / norm) as f32)
                .collect(),
        ))
    }
}

impl Metric {
    /// Distance between two embeddings (accumulated in f64).
    pub fn distance(self, a: &Embedding, b: &Embedding) -> Result<f32, MetricError> {
        let (a, b) = (a.values(), b.values());
        if a.len() != b.len() {
            return Err(MetricError::Length(a.len(), b.len()));
        }
        let pairs = a.iter().zip(b).map(|(&x, &y)| (f64::from(x), f64::from(y)));
        match self {
            Metric::Euclidean => {
                Ok(pairs.map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt() as f32)
            }
            Metric::Cosine => {
                let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
                for (x, y) in pairs {
                    dot += x * y;
                    na += x * x;
                    nb += y * y;
                }
                if na == 0.0 || nb == 0.0 {
                    return Err(MetricError::ZeroNorm);
                }
                Ok((1.0 - dot / (na.sqrt() * nb.sqrt())) as f32)
            }
        }
    }

    /// Cosine similarity for a cosine distance; `None` for metrics without one.
    pub fn similarity_of(self, distance: f32) -> Option<f32> {
        match self {
            Metric::Cosine => Some(self.similarity(distance)),
            Metric::Euclidean => None,
        }
    }

    /// `1 - distance`: the cosine similarity a cosine distance stands for.
    pub(crate) fn similarity(self, distance: f32) -> f32 {
        1.0 - distance
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(v: &[f32]) -> Embedding {
        Embedding::new(v.to_vec()).unwrap()
    }

    #[test]
    fn euclidean_and_cosine_distances() {
        let (a, b) = (e(&[3.0, 0.0]), e(&[0.0, 4.0]));
        assert!((Metric::Euclidean.distance(&a, &b).unwrap() - 5.0).abs() < 1e-6);
        assert!((Metric::Cosine.distance(&a, &b).unwrap() - 1.0).abs() < 1e-6);
        let c = e(&[6.0, 0.0]);
        assert!(Metric::Cosine.distance(&a, &c).unwrap().abs() < 1e-6);
        let opposite = e(&[-1.0, 0.0]);
        assert!((Metric::Cosine.distance(&a, &opposite).unwrap() - 2.0).abs() < 1e-6);
        assert_eq!(Metric::Cosine.similarity_of(0.25), Some(0.75));
        assert_eq!(Metric::Euclidean.similarity_of(0.25), None);
    }

    #[test]
    fn mismatched_zero_and_non_finite_embeddings_are_errors() {
        assert_eq!(
            Metric::Euclidean.distance(&e(&[1.0]), &e(&[1.0, 2.0])),
            Err(MetricError::Length(1, 2))
        );
        assert_eq!(
            Metric::Cosine.distance(&e(&[0.0, 0.0]), &e(&[1.0, 2.0])),
            Err(MetricError::ZeroNorm)
        );
        assert_eq!(
            Embedding::new(vec![1.0, f32::NAN]).unwrap_err().to_string(),
            MetricError::NotFinite {
                index: 1,
                value: f32::NAN
            }
            .to_string()
        );
        assert_eq!(Embedding::new(vec![]), Err(MetricError::Empty));
    }

    #[test]
    fn l2_normalization_keeps_direction() {
        let n = e(&[3.0, 4.0]).l2_normalized().unwrap();
        assert!((n.values()[0] - 0.6).abs() < 1e-7 && (n.values()[1] - 0.8).abs() < 1e-7);
        assert_eq!(e(&[0.0]).l2_normalized(), Err(MetricError::ZeroNorm));
    }
}
