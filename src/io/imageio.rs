//! Image files in and out of the model's working resolution.
//!
//! An image is fitted inside the model's square working size with its aspect kept, padded by
//! repeating its edge pixels (a flat border would itself be "content" the model reacts to), and
//! after generation the same window is cut out and resized back to the input's exact dimensions.
//! Outputs are plain PNG: the encoder writes no EXIF/XMP/text chunks, so no metadata survives.
//! Alpha is dropped (composited on nothing: the colour channels are kept as stored).

use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use image::{DynamicImage, ImageReader, RgbImage};
use ndarray::{Array4, ArrayView3};

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: cannot encode PNG")]
    Encode {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },
    #[error("{path}: cannot write image")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A model result too small for the image it should hold: indexing it would panic.
#[derive(Debug, thiserror::Error)]
#[error("the decoded image has shape {found:?}; expected [3, {height}, {width}] or larger")]
pub struct ShapeError {
    pub found: Vec<usize>,
    pub height: usize,
    pub width: usize,
}

/// `image` must be `[3, H, W]` with H >= `height` and W >= `width`.
fn check_shape(image: &ArrayView3<f32>, height: u32, width: u32) -> Result<(), ShapeError> {
    let (height, width) = (height as usize, width as usize);
    let shape = image.shape();
    if shape[0] == 3 && shape[1] >= height && shape[2] >= width {
        return Ok(());
    }
    Err(ShapeError {
        found: shape.to_vec(),
        height,
        width,
    })
}

/// How an image was placed in the working square, to undo it afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub original_width: u32,
    pub original_height: u32,
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
    pub grayscale: bool,
}

/// `[1, 3, size, size]` in `[-1, 1]` plus how to map the result back.
pub fn to_working_tensor(image: &DynamicImage, size: u32) -> (Array4<f32>, Placement) {
    let grayscale = !image.color().has_color();
    let rgb = image.to_rgb8();
    let (w, h) = rgb.dimensions();
    let scale = f64::from(size) / f64::from(w.max(h));
    let width = ((f64::from(w) * scale).round() as u32).clamp(1, size);
    let height = ((f64::from(h) * scale).round() as u32).clamp(1, size);
    let fitted = if (width, height) == (w, h) {
        rgb
    } else {
        image::imageops::resize(&rgb, width, height, FilterType::Lanczos3)
    };
    let x = (size - width) / 2;
    let y = (size - height) / 2;
    let mut tensor = Array4::<f32>::zeros((1, 3, size as usize, size as usize));
    for row in 0..size {
        let source_y = row.saturating_sub(y).min(height - 1);
        for column in 0..size {
            let source_x = column.saturating_sub(x).min(width - 1);
            let pixel = fitted.get_pixel(source_x, source_y);
            for channel in 0..3 {
                tensor[[0, channel, row as usize, column as usize]] =
                    f32::from(pixel[channel]) / 255.0 * 2.0 - 1.0;
            }
        }
    }
    let placement = Placement {
        original_width: w,
        original_height: h,
        x,
        y,
        width,
        height,
        grayscale,
    };
    (tensor, placement)
}

/// A `[3, size, size]` result in `[0, 1]` back to the input's size and colour type; a result
/// too small for the placement is an error.
pub fn from_working_tensor(
    image: ArrayView3<f32>,
    placement: &Placement,
) -> Result<DynamicImage, ShapeError> {
    check_shape(
        &image,
        placement.y + placement.height,
        placement.x + placement.width,
    )?;
    let mut window = RgbImage::new(placement.width, placement.height);
    for (column, row, pixel) in window.enumerate_pixels_mut() {
        for channel in 0..3 {
            let value = image[[
                channel,
                (row + placement.y) as usize,
                (column + placement.x) as usize,
            ]];
            // diffusers' numpy_to_pil: (x * 255).round()
            pixel[channel] = (value * 255.0).round().clamp(0.0, 255.0) as u8;
        }
    }
    Ok(restore(
        window,
        (placement.original_width, placement.original_height),
        placement.grayscale,
    ))
}

/// Generated pixels resized (Lanczos3) to the input's `original` size and colour type.
fn restore(generated: RgbImage, original: (u32, u32), grayscale: bool) -> DynamicImage {
    let restored = if generated.dimensions() == original {
        generated
    } else {
        image::imageops::resize(&generated, original.0, original.1, FilterType::Lanczos3)
    };
    if grayscale {
        DynamicImage::ImageLuma8(DynamicImage::ImageRgb8(restored).to_luma8())
    } else {
        DynamicImage::ImageRgb8(restored)
    }
}

/// How an image larger than the working square was laid on a native-size canvas: kept at its
/// own size (or shrunk to the pixel budget), padded on the right and bottom by repeating its last
/// column and row up to at least one working square and a multiple of the VAE factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Canvas {
    pub original_width: u32,
    pub original_height: u32,
    /// The image's size on the canvas: its own, unless over the pixel budget.
    pub width: u32,
    pub height: u32,
    pub canvas_width: u32,
    pub canvas_height: u32,
    pub grayscale: bool,
}

/// How an image meets the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Neither side exceeds the working size: fitted into one working square.
    Fitted(Placement),
    /// Larger: generated at its own size in tiles.
    Native(Canvas),
}

/// What an image is generated at and how big the model's canvas is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// The model's working square side, in pixels.
    pub working: u32,
    /// Canvas sides are multiples of this (the VAE's downsampling factor).
    pub multiple: u32,
    /// Images with more pixels are generated shrunk to this many, then resized back.
    pub max_pixels: u64,
}

/// The model input for `image`, `[1, 3, H, W]` in `[-1, 1]`, and how to map the result back.
pub fn frame(image: &DynamicImage, limits: FrameLimits) -> (Array4<f32>, Framing) {
    let (w, h) = (image.width(), image.height());
    let (width, height) = within_budget(w, h, limits);
    if width.max(height) <= limits.working {
        let (tensor, placement) = to_working_tensor(image, limits.working);
        return (tensor, Framing::Fitted(placement));
    }
    let layout = canvas(image, (width, height), limits);
    (canvas_tensor(image, &layout), Framing::Native(layout))
}

/// Where `image`, generated at `size`, lies on its native canvas.
fn canvas(image: &DynamicImage, size: (u32, u32), limits: FrameLimits) -> Canvas {
    let multiple = limits.multiple.max(1);
    let side = |length: u32| length.max(limits.working).div_ceil(multiple) * multiple;
    Canvas {
        original_width: image.width(),
        original_height: image.height(),
        width: size.0,
        height: size.1,
        canvas_width: side(size.0),
        canvas_height: side(size.1),
        grayscale: !image.color().has_color(),
    }
}

/// `image` at its own size on a canvas of at least `limits.working` per side, a multiple of
/// `limits.multiple` (never shrunk: the pixel budget is not applied), and where it lies.
pub fn to_canvas_tensor(image: &DynamicImage, limits: FrameLimits) -> (Array4<f32>, Canvas) {
    let layout = canvas(image, (image.width(), image.height()), limits);
    (canvas_tensor(image, &layout), layout)
}

/// The canvas `[1, 3, H, W]` in `[-1, 1]`: the image resized to the layout's size if need be,
/// its last column and row repeated over the padding.
fn canvas_tensor(image: &DynamicImage, layout: &Canvas) -> Array4<f32> {
    let size = (layout.width, layout.height);
    let (width, height) = size;
    let rgb = image.to_rgb8();
    let content = if rgb.dimensions() == size {
        rgb
    } else {
        image::imageops::resize(&rgb, width, height, FilterType::Lanczos3)
    };
    Array4::from_shape_fn(
        (
            1,
            3,
            layout.canvas_height as usize,
            layout.canvas_width as usize,
        ),
        |(_, channel, y, x)| {
            let pixel = content.get_pixel((x as u32).min(width - 1), (y as u32).min(height - 1));
            f32::from(pixel[channel]) / 255.0 * 2.0 - 1.0
        },
    )
}

/// The size an image is generated at: its own, or shrunk (aspect kept) to the pixel budget, which
/// is never below one working square.
fn within_budget(width: u32, height: u32, limits: FrameLimits) -> (u32, u32) {
    let budget = limits
        .max_pixels
        .max(u64::from(limits.working) * u64::from(limits.working));
    let pixels = u64::from(width) * u64::from(height);
    if pixels <= budget {
        return (width, height);
    }
    let scale = (budget as f64 / pixels as f64).sqrt();
    let shrink = |length: u32| ((f64::from(length) * scale).floor() as u32).max(1);
    (shrink(width), shrink(height))
}

/// A `[3, H, W]` model result in `[0, 1]` back to the input's size and colour type; a result
/// too small for the framing is an error.
pub fn unframe(image: ArrayView3<f32>, framing: &Framing) -> Result<DynamicImage, ShapeError> {
    let canvas = match framing {
        Framing::Fitted(placement) => return from_working_tensor(image, placement),
        Framing::Native(canvas) => canvas,
    };
    check_shape(&image, canvas.height, canvas.width)?;
    let content = RgbImage::from_fn(canvas.width, canvas.height, |x, y| {
        image::Rgb(std::array::from_fn(|channel| {
            // diffusers' numpy_to_pil: (x * 255).round()
            (image[[channel, y as usize, x as usize]] * 255.0)
                .round()
                .clamp(0.0, 255.0) as u8
        }))
    });
    Ok(restore(
        content,
        (canvas.original_width, canvas.original_height),
        canvas.grayscale,
    ))
}

/// PNG bytes of an image: pixels only, no metadata chunks.
pub fn encode_png(image: &DynamicImage) -> Result<Vec<u8>, image::ImageError> {
    let mut bytes = Vec::new();
    image.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )?;
    Ok(bytes)
}

/// The one PNG writer: encodes in memory (no metadata chunks), creates the parent folders, writes
/// atomically, and returns the hex sha256 of the bytes written.
pub fn write_png(image: &DynamicImage, path: &Path) -> Result<String, ImageError> {
    write_png_tagged(image, path, None)
}

/// [`write_png`] that never replaces a file: an existing `path` (even one created while this
/// encodes) is an error and is left as it is ([`crate::io::atomic::write_new`]).
pub fn write_png_new(image: &DynamicImage, path: &Path) -> Result<String, ImageError> {
    write_png_with(image, path, None, false)
}

/// [`write_png`] whose temp file carries `tag` ([`crate::io::atomic::write_tagged`]).
fn write_png_tagged(
    image: &DynamicImage,
    path: &Path,
    tag: Option<&str>,
) -> Result<String, ImageError> {
    write_png_with(image, path, tag, true)
}

fn write_png_with(
    image: &DynamicImage,
    path: &Path,
    tag: Option<&str>,
    replace: bool,
) -> Result<String, ImageError> {
    let bytes = encode_png(image).map_err(|source| ImageError::Encode {
        path: path.to_path_buf(),
        source,
    })?;
    let write_error = |source| ImageError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(write_error)?;
    }
    if replace {
        crate::io::atomic::write_tagged(path, &bytes, tag).map_err(write_error)?;
    } else {
        crate::io::atomic::write_new(path, &bytes).map_err(write_error)?;
    }
    Ok(hex::encode(crate::io::hashing::sha256_bytes(&bytes)))
}

/// [`write_png`] for an output below a folder the run owns (OUT): the folders of `relative` are
/// created below `root` without following a symlink, and a symlink in the way is an error, never
/// written through ([`crate::io::safe_path`]).
pub fn write_png_below(
    image: &DynamicImage,
    root: &Path,
    relative: &Path,
) -> Result<String, ImageError> {
    write_png_below_tagged(image, root, relative, None)
}

/// [`write_png_below`] whose temp file carries `tag` (a sharded run's part tag), so that only
/// this part's cleanup removes it after a crash.
pub fn write_png_below_tagged(
    image: &DynamicImage,
    root: &Path,
    relative: &Path,
    tag: Option<&str>,
) -> Result<String, ImageError> {
    let write_error = |source| ImageError::Write {
        path: root.join(relative),
        source,
    };
    let path = crate::io::safe_path::prepare_file_below(root, relative).map_err(write_error)?;
    write_png_tagged(image, &path, tag)
}

/// Pixels plus what decoding learned about the file, for the report and for mapping back.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub image: DynamicImage,
    pub format: image::ImageFormat,
    /// Colour type as stored in the file (a 16-bit PNG says `Rgb16`; a CMYK JPEG says `Cmyk8`
    /// although its pixels arrive converted to RGB).
    pub original_color: image::ExtendedColorType,
    /// The file's EXIF orientation, already applied to `image`.
    pub orientation: image::metadata::Orientation,
}

/// Decodes in-memory bytes by content (never by file name) under `limits`, so a file declaring a
/// huge size is refused from its header before any pixel buffer is allocated. Animated GIF and
/// WebP give their first frame.
pub fn decode_with_limits(bytes: &[u8], limits: image::Limits) -> image::ImageResult<Decoded> {
    use image::ImageDecoder;

    let mut reader = ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format()?;
    let format = reader.format().ok_or_else(|| {
        image::ImageError::Unsupported(image::error::UnsupportedError::from_format_and_kind(
            image::error::ImageFormatHint::Unknown,
            image::error::UnsupportedErrorKind::Format(image::error::ImageFormatHint::Unknown),
        ))
    })?;
    // The JPEG decoder fills a cut-off file with grey instead of failing.
    if format == image::ImageFormat::Jpeg && !jpeg_has_end_marker(bytes) {
        return Err(image::ImageError::IoError(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "JPEG ends before its end-of-image marker",
        )));
    }
    let mut allocation = limits.clone();
    reader.limits(limits);
    let mut decoder = reader.into_decoder()?;
    // `ImageReader::decode` makes the same reservation; `into_decoder` only checks dimensions.
    allocation.reserve(decoder.total_bytes())?;
    let mut original_color = decoder.original_color_type();
    if format == image::ImageFormat::Jpeg && jpeg_component_count(bytes) == Some(4) {
        original_color = image::ExtendedColorType::Cmyk8;
    }
    // A damaged EXIF block is no reason to refuse the pixels.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder)?;
    // Applied once, here, for every command: a sideways phone photo is anonymized, certified
    // and written upright (the detector finds upright faces; outputs carry no orientation tag).
    image.apply_orientation(orientation);
    Ok(Decoded {
        image,
        format,
        original_color,
        orientation,
    })
}

/// Whether an end-of-image marker (FF D9) follows the first scan. The first scan is found by
/// walking the marker segments from SOI by their lengths: a camera's EXIF thumbnail is a whole
/// JPEG inside APP1, whose own scan and end marker must not count. Inside entropy-coded data FF
/// is always followed by 00 or a restart marker, so FF D9 there is the real end. Bytes after the
/// marker are allowed (some cameras append data).
fn jpeg_has_end_marker(bytes: &[u8]) -> bool {
    let Some(scan) = jpeg_first_scan(bytes) else {
        return false;
    };
    bytes[scan..].windows(2).any(|pair| pair == [0xFF, 0xD9])
}

/// Where the entropy-coded data of the first scan starts (after its SOS header), or `None`
/// when the segments run out first (a file cut before its scan).
fn jpeg_first_scan(bytes: &[u8]) -> Option<usize> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut at = 2;
    while at + 4 <= bytes.len() {
        if bytes[at] != 0xFF {
            return None;
        }
        let marker = bytes[at + 1];
        // Fill bytes, and the standalone markers (TEM, RSTn), which have no length.
        if marker == 0xFF {
            at += 1;
            continue;
        }
        if marker == 0x01 || (0xD0..=0xD7).contains(&marker) {
            at += 2;
            continue;
        }
        let length = usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]));
        if length < 2 {
            return None;
        }
        let end = at + 2 + length;
        if marker == 0xDA {
            return (end <= bytes.len()).then_some(end);
        }
        at = end;
    }
    None
}

/// Number of colour components in a JPEG's frame header (4 = CMYK or YCCK), which the decoder
/// hides by converting to RGB.
fn jpeg_component_count(bytes: &[u8]) -> Option<u8> {
    let mut at = 2; // after SOI
    while at + 4 <= bytes.len() {
        if bytes[at] != 0xFF {
            return None;
        }
        let marker = bytes[at + 1];
        if marker == 0xFF {
            at += 1; // fill byte
            continue;
        }
        let length = usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]));
        // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC): length, precision, height, width, Nf
        if (0xC0..=0xCF).contains(&marker) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
            return bytes.get(at + 9).copied();
        }
        if marker == 0xDA {
            return None; // scan data reached without a frame header
        }
        at += 2 + length;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(side: u32) -> Vec<u8> {
        // Noise, so that the scan data is most of the file.
        let image = RgbImage::from_fn(side, side, |x, y| {
            let v = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)) as u8;
            image::Rgb([v, v.wrapping_mul(3), v.wrapping_add(y as u8)])
        });
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new(&mut bytes)
            .encode_image(&image)
            .unwrap();
        bytes
    }

    /// A camera JPEG carries a whole thumbnail JPEG (with its own scan and end marker) in its
    /// EXIF APP1 segment, before the photo's own scan.
    #[test]
    fn a_cut_jpeg_with_an_exif_thumbnail_is_refused() {
        let thumbnail = jpeg(16);
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend(&thumbnail);
        let length = u16::try_from(app1.len() + 2).unwrap();
        let mut photo = jpeg(256);
        let mut segment = vec![0xFF, 0xE1];
        segment.extend(length.to_be_bytes());
        segment.extend(app1);
        photo.splice(2..2, segment);
        decode_with_limits(&photo, image::Limits::default()).unwrap();

        let cut = &photo[..photo.len() * 6 / 10];
        let error = decode_with_limits(cut, image::Limits::default()).unwrap_err();
        assert!(error.to_string().contains("end-of-image marker"), "{error}");
    }

    /// A model returning a smaller image (or another channel count) than it was given is an
    /// error, not an index out of bounds.
    #[test]
    fn a_result_of_the_wrong_shape_is_an_error() {
        let image = DynamicImage::ImageRgb8(RgbImage::new(40, 20));
        let (tensor, placement) = to_working_tensor(&image, 32);
        let fitted = Framing::Fitted(placement);
        let limits = FrameLimits {
            working: 32,
            multiple: 8,
            max_pixels: u64::MAX,
        };
        let (large, canvas) =
            to_canvas_tensor(&DynamicImage::ImageRgb8(RgbImage::new(80, 40)), limits);
        let native = Framing::Native(canvas);
        let ok = |t: &Array4<f32>| t.index_axis(ndarray::Axis(0), 0).mapv(|v| v / 2.0 + 0.5);
        unframe(ok(&tensor).view(), &fitted).unwrap();
        unframe(ok(&large).view(), &native).unwrap();
        for (framing, shape) in [
            (&fitted, (3, 16, 32)),
            (&fitted, (1, 32, 32)),
            (&native, (3, 40, 40)),
            (&native, (4, 40, 80)),
        ] {
            let wrong = ndarray::Array3::<f32>::zeros(shape);
            let error = unframe(wrong.view(), framing).unwrap_err();
            assert!(
                error.to_string().contains("decoded image has shape"),
                "{error}"
            );
        }
    }
}
