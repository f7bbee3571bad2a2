//! Identity embedder: an ONNX graph described by an [`EmbedderSpec`], run on aligned chips.

use std::path::PathBuf;

use image::RgbImage;
use ndarray::Array4;
use ort::session::Session;
use ort::value::TensorRef;

use super::metric::{Embedding, MetricError};
use super::spec::{ChannelOrder, EmbedderSpec, Layout};
use crate::io::runtime::{Runtime, RuntimeError, SessionOptions};

#[derive(Debug, thiserror::Error)]
pub enum EmbedderError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(
        "embedder `{name}`: {path} does not exist (the spec's `onnx` is relative to the spec file)"
    )]
    MissingModel { name: String, path: PathBuf },
    #[error("embedder `{name}`: cannot read {path}: {message}")]
    Read {
        name: String,
        path: PathBuf,
        message: String,
    },
    #[error("embedder `{name}`: {path} has sha256 {found}, but the spec's `sha256` says {expected}; the model changed or the spec is stale")]
    Digest {
        name: String,
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error(
        "embedder `{name}`: the graph has no {what} `{wanted}` (spec `{key}`); it has: {available}"
    )]
    Io {
        name: String,
        what: &'static str,
        key: &'static str,
        wanted: String,
        available: String,
    },
    #[error("embedder `{name}`: chip is {found_w}x{found_h}, the spec's input-size is {want_w}x{want_h}")]
    ChipSize {
        name: String,
        found_w: u32,
        found_h: u32,
        want_w: u32,
        want_h: u32,
    },
    #[error("embedder `{name}`: ONNX Runtime failed while running: {message}")]
    Run { name: String, message: String },
    #[error("embedder `{name}`: bad output: {source}")]
    Output { name: String, source: MetricError },
}

/// The input tensor for one chip as the spec describes it: channel order, `(pixel - mean) / std`,
/// batch of one in the spec's layout.
pub fn chip_tensor(chip: &RgbImage, spec: &EmbedderSpec) -> Array4<f32> {
    let (w, h) = (chip.width() as usize, chip.height() as usize);
    let shape = match spec.layout {
        Layout::Nchw => (1, 3, h, w),
        Layout::Nhwc => (1, h, w, 3),
    };
    let mut tensor = Array4::<f32>::zeros(shape);
    for (x, y, pixel) in chip.enumerate_pixels() {
        let (x, y) = (x as usize, y as usize);
        for c in 0..3 {
            let source = match spec.channel_order {
                ChannelOrder::Rgb => c,
                ChannelOrder::Bgr => 2 - c,
            };
            let value = (f32::from(pixel[source]) - spec.mean[c]) / spec.std[c];
            match spec.layout {
                Layout::Nchw => tensor[[0, c, y, x]] = value,
                Layout::Nhwc => tensor[[0, y, x, c]] = value,
            }
        }
    }
    tensor
}

pub struct Embedder {
    session: Session,
    spec: EmbedderSpec,
}

impl Embedder {
    /// Opens the spec's ONNX graph, checking its digest (when the spec gives one) and that the
    /// spec's input and output names exist.
    pub fn load(
        runtime: &Runtime,
        spec: EmbedderSpec,
        options: &SessionOptions,
    ) -> Result<Self, EmbedderError> {
        let path = spec.onnx_path();
        let name = spec.name.clone();
        if !path.is_file() {
            return Err(EmbedderError::MissingModel { name, path });
        }
        if let Some(expected) = &spec.sha256 {
            let found =
                crate::io::hashing::sha256_file(&path).map_err(|e| EmbedderError::Read {
                    name: name.clone(),
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            if !found.eq_ignore_ascii_case(expected) {
                return Err(EmbedderError::Digest {
                    name,
                    path,
                    found,
                    expected: expected.clone(),
                });
            }
        }
        let session = runtime.session(&path, options)?;
        let names = |outlets: &[ort::value::Outlet]| {
            outlets
                .iter()
                .map(|o| o.name().to_string())
                .collect::<Vec<_>>()
        };
        for (what, key, wanted, available) in [
            (
                "input",
                "input-name",
                &spec.input_name,
                names(session.inputs()),
            ),
            (
                "output",
                "output-name",
                &spec.output_name,
                names(session.outputs()),
            ),
        ] {
            if !available.contains(wanted) {
                return Err(EmbedderError::Io {
                    name,
                    what,
                    key,
                    wanted: wanted.clone(),
                    available: available.join(", "),
                });
            }
        }
        Ok(Self { session, spec })
    }

    pub fn spec(&self) -> &EmbedderSpec {
        &self.spec
    }

    /// The embedding of a whole picture: its largest centered region with the input's aspect
    /// ratio, resized to the spec's input size ([`super::align::whole_image_chip`]). This is how a
    /// whole-image spec (`subject = "whole-image"`) is meant to be used.
    pub fn embed_whole_image(&mut self, image: &RgbImage) -> Result<Embedding, EmbedderError> {
        let [w, h] = self.spec.input_size;
        self.embed(&super::align::whole_image_chip(image, w, h))
    }

    /// The embedding of one aligned chip of the spec's input size. Chips run one at a time:
    /// many exported embedders have a fixed batch of one.
    pub fn embed(&mut self, chip: &RgbImage) -> Result<Embedding, EmbedderError> {
        let [want_w, want_h] = self.spec.input_size;
        if chip.dimensions() != (want_w, want_h) {
            return Err(EmbedderError::ChipSize {
                name: self.spec.name.clone(),
                found_w: chip.width(),
                found_h: chip.height(),
                want_w,
                want_h,
            });
        }
        let tensor = chip_tensor(chip, &self.spec);
        let name = &self.spec.name;
        let run = |e: ort::Error| EmbedderError::Run {
            name: name.clone(),
            message: e.to_string(),
        };
        let input = TensorRef::from_array_view(tensor.view()).map_err(run)?;
        let outputs = self
            .session
            .run(ort::inputs![self.spec.input_name.as_str() => input])
            .map_err(run)?;
        let (_, values) = outputs[self.spec.output_name.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(run)?;
        let output = |source| EmbedderError::Output {
            name: name.clone(),
            source,
        };
        let embedding = Embedding::new(values.to_vec()).map_err(output)?;
        if self.spec.l2_normalize {
            embedding.l2_normalized().map_err(output)
        } else {
            Ok(embedding)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn spec(layout: &str, order: &str) -> EmbedderSpec {
        let text = format!(
            r#"name = "t"
onnx = "m.onnx"
input-name = "i"
output-name = "o"
input-size = [2, 1]
layout = "{layout}"
channel-order = "{order}"
mean = [10.0, 20.0, 30.0]
std = [2.0, 4.0, 5.0]
metric = "euclidean"
default-operating-point = "p"
[alignment]
left-eye = [0.3, 0.4]
right-eye = [0.7, 0.4]
[[operating-point]]
name = "p"
max-distance = 1.0
provenance = "test"
"#
        );
        EmbedderSpec::parse(&text, Path::new("spec.toml")).unwrap()
    }

    #[test]
    fn tensor_follows_layout_channel_order_and_normalization() {
        let chip = RgbImage::from_raw(2, 1, vec![12, 24, 35, 0, 0, 255]).unwrap();
        let t = chip_tensor(&chip, &spec("nchw", "rgb"));
        assert_eq!(t.shape(), &[1, 3, 1, 2]);
        assert_eq!(
            [t[[0, 0, 0, 0]], t[[0, 1, 0, 0]], t[[0, 2, 0, 0]]],
            [1.0, 1.0, 1.0]
        );
        assert_eq!(t[[0, 2, 0, 1]], (255.0 - 30.0) / 5.0);

        let t = chip_tensor(&chip, &spec("nhwc", "bgr"));
        assert_eq!(t.shape(), &[1, 1, 2, 3]);
        // channel 0 holds blue, normalized with the first mean/std
        assert_eq!(t[[0, 0, 0, 0]], (35.0 - 10.0) / 2.0);
        assert_eq!(t[[0, 0, 0, 2]], (12.0 - 30.0) / 5.0);
        assert_eq!(t[[0, 0, 1, 0]], (255.0 - 10.0) / 2.0);
    }
}
