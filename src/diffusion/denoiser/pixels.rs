//! Grayscale images to and from a denoiser's value range: pixel p of an image of full scale M maps
//! linearly to low + p / M * (high - low); outputs come back as 16-bit grayscale, clamped to the
//! range.

use image::imageops::FilterType;
use image::{ColorType, DynamicImage, ImageBuffer, Luma};
use ndarray::{Array4, ArrayView2};

use super::spec::{DenoiserSpec, ValueRange};

/// A decoded 8- or 16-bit grayscale image of the spec's size as `[1, 1, size, size]` values.
pub fn to_values(image: &DynamicImage, spec: &DenoiserSpec) -> Result<Array4<f32>, String> {
    let (width, height) = (image.width() as usize, image.height() as usize);
    if (width, height) != (spec.size, spec.size) {
        return Err(format!(
            "the image is {width}x{height}; {} works at {}x{}: crop or resize it to that size",
            spec.path.display(),
            spec.size,
            spec.size
        ));
    }
    field_values(image, spec)
}

/// [`to_values`] for an image of any size (a field the model runs on in tiles), `[1, 1, H, W]`.
pub fn field_values(image: &DynamicImage, spec: &DenoiserSpec) -> Result<Array4<f32>, String> {
    if spec.channels != 1 {
        return Err(format!(
            "{}: channels = {}; images are read as grayscale, so only 1-channel models can sample",
            spec.path.display(),
            spec.channels
        ));
    }
    let (width, height) = (image.width() as usize, image.height() as usize);
    let ValueRange { low, high } = spec.values;
    let span = high - low;
    // The same f32 operations as tools/make_terrain_fixtures.py, so both read the same values.
    let map = |p: f32, full: f32| p / full * span + low;
    let values: Vec<f32> = match image {
        DynamicImage::ImageLuma8(gray) => {
            gray.pixels().map(|p| map(f32::from(p[0]), 255.0)).collect()
        }
        DynamicImage::ImageLuma16(gray) => gray
            .pixels()
            .map(|p| map(f32::from(p[0]), 65535.0))
            .collect(),
        other => return Err(not_grayscale(other.color())),
    };
    Array4::from_shape_vec((1, 1, height, width), values).map_err(|e| e.to_string())
}

fn not_grayscale(color: ColorType) -> String {
    format!(
        "the image is {color:?}; the model takes 1-channel grayscale (an 8- or 16-bit grayscale PNG, no alpha)"
    )
}

/// An 8- or 16-bit grayscale image scaled by `scale` in both directions with Lanczos3, as 16-bit
/// (so the filter keeps 16-bit inputs' precision); at scale 1 the image as it is.
pub fn upsample(image: &DynamicImage, scale: u32) -> Result<DynamicImage, String> {
    match image {
        _ if scale == 1 => Ok(image.clone()),
        DynamicImage::ImageLuma8(_) | DynamicImage::ImageLuma16(_) => {
            let gray = image.to_luma16();
            let (width, height) = gray.dimensions();
            Ok(DynamicImage::ImageLuma16(image::imageops::resize(
                &gray,
                width * scale,
                height * scale,
                FilterType::Lanczos3,
            )))
        }
        other => Err(not_grayscale(other.color())),
    }
}

/// Values `[H, W]` as a 16-bit grayscale image, clamped to the range (non-finite values to low).
pub fn to_image(values: ArrayView2<f32>, range: ValueRange) -> DynamicImage {
    let (height, width) = values.dim();
    let span = range.high - range.low;
    let image = ImageBuffer::from_fn(width as u32, height as u32, |x, y| {
        let v = values[[y as usize, x as usize]];
        let unit = if v.is_finite() {
            ((v - range.low) / span).clamp(0.0, 1.0)
        } else {
            0.0
        };
        Luma([(unit * 65535.0).round() as u16])
    });
    DynamicImage::ImageLuma16(image)
}
