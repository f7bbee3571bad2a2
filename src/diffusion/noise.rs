//! Seeded Gaussian noise. Every random tensor in a Boomerang run comes from here, so that a run is
//! a pure function of (run seed, image content) and replays bit for bit.

use ndarray::{ArrayD, IxDyn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rand_distr::StandardNormal;
use sha2::{Digest, Sha256};

/// Anything that can hand out standard-normal tensors of a requested shape.
///
/// Schedulers take one of these for their ancestral noise so tests can replay recorded tensors.
pub trait NoiseSource {
    fn randn(&mut self, shape: &[usize]) -> ArrayD<f32>;
}

/// Which purpose a stream serves. Separate streams keep, e.g., the start noise independent of how
/// many ancestral steps a scheduler takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    VaeSample,
    StartNoise,
    StepNoise,
}

impl Stream {
    /// ChaCha stream ids: one key, three non-overlapping keystreams.
    fn id(self) -> u64 {
        match self {
            Stream::VaeSample => 1,
            Stream::StartNoise => 2,
            Stream::StepNoise => 3,
        }
    }
}

/// A ChaCha20 generator producing standard normals.
pub struct GaussianRng(ChaCha20Rng);

impl GaussianRng {
    pub fn new(seed: [u8; 32], stream: Stream) -> Self {
        let mut rng = ChaCha20Rng::from_seed(seed);
        rng.set_stream(stream.id());
        Self(rng)
    }
}

impl NoiseSource for GaussianRng {
    fn randn(&mut self, shape: &[usize]) -> ArrayD<f32> {
        let rng = &mut self.0;
        ArrayD::from_shape_simple_fn(IxDyn(shape), || rng.sample::<f32, _>(StandardNormal))
    }
}

/// The per-image key: a hash of the run seed and the image's content hash, so the noise an image
/// receives never depends on which other images are in the run or in what order they are processed.
pub fn image_seed(run_seed: u64, content_sha256: &[u8; 32], sample_index: u32) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"boomerang/image-seed/v1");
    hasher.update(run_seed.to_le_bytes());
    hasher.update(content_sha256);
    hasher.update(sample_index.to_le_bytes());
    hasher.finalize().into()
}

/// A public name for a run seed: sha256 of a domain tag and the seed, hex. Runs and parts of a run
/// can show they share a secret without writing it down; finding the seed from its fingerprint
/// takes a search of all 2^64 seeds.
pub fn seed_fingerprint(run_seed: u64) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"boomerang/seed-fingerprint/v1");
    hasher.update(run_seed.to_le_bytes());
    hex::encode(hasher.finalize())
}

/// A fresh run seed from the operating system, for runs given no `--seed`.
pub fn random_run_seed() -> u64 {
    use rand::RngCore;
    ChaCha20Rng::from_os_rng().next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_name_seeds_apart_and_stably() {
        assert_eq!(seed_fingerprint(7), seed_fingerprint(7));
        assert_ne!(seed_fingerprint(7), seed_fingerprint(8));
        assert_eq!(seed_fingerprint(7).len(), 64);
    }
}
