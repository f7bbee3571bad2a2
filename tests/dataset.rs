//! Dataset layer: folder checks, the walk, safe decoding of bad inputs, output naming and
//! collisions. Inputs are generated into temp folders; only what the Rust encoders cannot make
//! is committed (tests/fixtures/bad_inputs, from tools/make_bad_inputs.py).

mod common;

use common::crc32;

use std::fs;
use std::io::Cursor;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use boomerang::io::dataset::{
    check_folders, load_image, load_image_with_limits, output_is_empty, output_relative, path_text,
    plan_outputs, walk, Action, DatasetError, DecodeLimits, Entry, EntryKind, InputErrorKind,
    NameKey, SkipReason,
};
use image::{DynamicImage, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};
use sha2::{Digest, Sha256};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bad_inputs")
        .join(name)
}

fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut bytes), format)
        .unwrap();
    bytes
}

fn gradient(width: u32, height: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(RgbImage::from_fn(width, height, |x, y| {
        Rgb([(x * 17) as u8, (y * 29) as u8, ((x + y) * 7) as u8])
    }))
}

fn png(width: u32, height: u32) -> Vec<u8> {
    encode(&gradient(width, height), ImageFormat::Png)
}

fn jpeg(width: u32, height: u32) -> Vec<u8> {
    encode(&gradient(width, height), ImageFormat::Jpeg)
}

fn write(root: &Path, relative: &str, bytes: &[u8]) -> PathBuf {
    let path = root.join(relative);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, bytes).unwrap();
    path
}

fn kinds(entries: &[Entry]) -> Vec<(String, EntryKind)> {
    entries
        .iter()
        .map(|entry| (entry.relative.display().to_string(), entry.kind.clone()))
        .collect()
}

fn load_error(path: &Path) -> InputErrorKind {
    match load_image(path) {
        Ok(loaded) => panic!("{} decoded as {:?}", path.display(), loaded.format),
        Err(error) => {
            assert!(!error.reason().is_empty());
            assert!(error.to_string().contains(&error.reason()));
            error.kind
        }
    }
}

// ---------- walk ----------

#[test]
fn walk_is_sorted_by_path_bytes_and_classifies_by_extension() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // Created out of order on purpose.
    for name in [
        "z.png",
        "b/2.jpg",
        "B.PNG",
        "b/10.jpeg",
        "a.b/c.webp",
        "a/d.bmp",
        "notes.txt",
        "README",
        "photo.TIFF",
        "x.png/inner.gif",
        "b/1.tif",
    ] {
        write(root, name, b"content is not looked at by the walk");
    }
    fs::create_dir_all(root.join("empty.jpg")).unwrap();

    let first = walk(root).unwrap();
    let not_image = |extension: Option<&str>| {
        EntryKind::Skipped(SkipReason::NotImageExtension(extension.map(String::from)))
    };
    let expected = vec![
        ("B.PNG".to_string(), EntryKind::Image),
        ("README".to_string(), not_image(None)),
        ("a/d.bmp".to_string(), EntryKind::Image),
        ("a.b/c.webp".to_string(), EntryKind::Image),
        ("b/1.tif".to_string(), EntryKind::Image),
        ("b/10.jpeg".to_string(), EntryKind::Image),
        ("b/2.jpg".to_string(), EntryKind::Image),
        ("notes.txt".to_string(), not_image(Some("txt"))),
        ("photo.TIFF".to_string(), EntryKind::Image),
        // A folder named like an image is walked into, never an entry itself.
        ("x.png/inner.gif".to_string(), EntryKind::Image),
        ("z.png".to_string(), EntryKind::Image),
    ];
    assert_eq!(kinds(&first), expected);
    assert_eq!(walk(root).unwrap(), first);
    let mut sorted = first.clone();
    sorted.sort_by(|a, b| a.relative.cmp(&b.relative));
    assert_eq!(sorted, first);
    assert_eq!(
        SkipReason::NotImageExtension(Some("txt".into())).to_string(),
        "not an image extension (.txt)"
    );
}

#[test]
fn walk_refuses_missing_or_file_input() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        walk(&dir.path().join("nope")),
        Err(DatasetError::InputMissing { .. })
    ));
    let file = write(dir.path(), "f.png", b"x");
    assert!(matches!(
        walk(&file),
        Err(DatasetError::InputNotFolder { .. })
    ));
}

#[test]
fn non_utf8_file_name_is_walked_loaded_and_mapped() {
    let dir = tempfile::tempdir().unwrap();
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9 \xff.png");
    fs::create_dir(dir.path().join("class")).unwrap();
    let path = dir.path().join("class").join(name);
    fs::write(&path, png(3, 2)).unwrap();

    let entries = walk(dir.path()).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].relative, Path::new("class").join(name));
    assert_eq!(entries[0].kind, EntryKind::Image);
    assert!(entries[0].relative.to_str().is_none());
    assert!(entries[0]
        .relative
        .display()
        .to_string()
        .contains('\u{FFFD}'));

    let loaded = load_image(&dir.path().join(&entries[0].relative)).unwrap();
    assert_eq!((loaded.image.width(), loaded.image.height()), (3, 2));

    let output = output_relative(&entries[0].relative, None);
    assert_eq!(
        output.as_os_str().as_bytes(),
        b"class/caf\xe9 \xff.png".as_slice()
    );
    let renamed = output_relative(&entries[0].relative, Some(&NameKey::from_run_seed(1)));
    assert!(renamed.to_str().is_some());

    // Report text keeps non-UTF-8 names apart where display() would merge them.
    assert_eq!(path_text(&entries[0].relative), "class/caf\\xE9 \\xFF.png");
    let other = Path::new("class").join(std::ffi::OsStr::from_bytes(b"caf\xe8 \xff.png"));
    assert_eq!(
        other.display().to_string(),
        entries[0].relative.display().to_string()
    );
    assert_ne!(path_text(&other), path_text(&entries[0].relative));
    assert_eq!(path_text(Path::new("café/a\\xE9.png")), "café/a\\\\xE9.png");
}

#[test]
fn symlinks_stay_inside_the_input_and_never_loop() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    write(&outside, "secret.png", &png(2, 2));
    let root = dir.path().join("in");
    write(&root, "real/a.png", &png(2, 2));
    write(&root, "other/b.png", &png(2, 2));
    write(&root, "other/deeper/c.png", &png(2, 2));

    symlink(outside.join("secret.png"), root.join("out_file.png")).unwrap();
    symlink(&outside, root.join("out_dir")).unwrap();
    symlink("../real/a.png", root.join("other/link_a.png")).unwrap();
    symlink("loop2.png", root.join("loop1.png")).unwrap();
    symlink("loop1.png", root.join("loop2.png")).unwrap();
    symlink("self.png", root.join("self.png")).unwrap();
    symlink("missing.png", root.join("broken.png")).unwrap();
    symlink("..", root.join("real/up")).unwrap();
    symlink(".", root.join("real/here")).unwrap();
    symlink(&root, root.join("root_link")).unwrap();
    // Followed: a sibling folder, seen again at the link's path.
    symlink("other", root.join("view")).unwrap();
    // Inside the followed `view`: a link to a folder is not followed a second time.
    symlink("../real", root.join("other/to_real")).unwrap();

    let entries = walk(&root).unwrap();
    let skipped = |reason| EntryKind::Skipped(reason);
    let expected: Vec<(String, EntryKind)> = [
        ("broken.png", skipped(SkipReason::BrokenSymlink)),
        ("loop1.png", skipped(SkipReason::SymlinkLoop)),
        ("loop2.png", skipped(SkipReason::SymlinkLoop)),
        ("other/b.png", EntryKind::Image),
        ("other/deeper/c.png", EntryKind::Image),
        ("other/link_a.png", EntryKind::Image),
        // Reached without passing another folder link: followed, but its own links are not.
        ("other/to_real/a.png", EntryKind::Image),
        (
            "other/to_real/here",
            skipped(SkipReason::NestedFolderSymlink),
        ),
        ("other/to_real/up", skipped(SkipReason::NestedFolderSymlink)),
        ("out_dir", skipped(SkipReason::SymlinkLeavesInput)),
        ("out_file.png", skipped(SkipReason::SymlinkLeavesInput)),
        ("real/a.png", EntryKind::Image),
        ("real/here", skipped(SkipReason::SymlinkLoop)),
        ("real/up", skipped(SkipReason::SymlinkLoop)),
        ("root_link", skipped(SkipReason::SymlinkLoop)),
        ("self.png", skipped(SkipReason::SymlinkLoop)),
        ("view/b.png", EntryKind::Image),
        ("view/deeper/c.png", EntryKind::Image),
        ("view/link_a.png", EntryKind::Image),
        ("view/to_real", skipped(SkipReason::NestedFolderSymlink)),
    ]
    .into_iter()
    .map(|(path, kind)| (path.to_string(), kind))
    .collect();
    assert_eq!(kinds(&entries), expected);
    assert_eq!(
        SkipReason::SymlinkLeavesInput.to_string(),
        "symlink leaves the input folder"
    );

    // Walking through a symlinked IN works the same.
    let root_alias = dir.path().join("alias");
    symlink(&root, &root_alias).unwrap();
    assert_eq!(walk(&root_alias).unwrap(), entries);
}

#[test]
fn unreadable_folder_is_a_skipped_entry() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "locked/a.png", &png(2, 2));
    write(dir.path(), "open/b.png", &png(2, 2));
    let locked = dir.path().join("locked");
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
    // root (CI containers) reads through mode 000: then the folder is simply walked.
    let still_readable = fs::read_dir(&locked).is_ok();
    let entries = walk(dir.path()).unwrap();
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();

    if still_readable {
        assert_eq!(entries[0].relative, Path::new("locked/a.png"));
        assert_eq!(entries[0].kind, EntryKind::Image);
    } else {
        assert_eq!(entries[0].relative, Path::new("locked"));
        match &entries[0].kind {
            EntryKind::Skipped(reason @ SkipReason::UnreadableFolder(_)) => {
                assert!(reason.to_string().contains("folder cannot be read"))
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(entries[1].relative, Path::new("open/b.png"));
    assert_eq!(entries.len(), 2);
}

// ---------- load_image: good inputs ----------

#[test]
fn load_hashes_the_bytes_and_decodes_by_content() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = png(5, 4);
    // A PNG named .jpg decodes as the PNG it is.
    let path = write(dir.path(), "misnamed.jpg", &bytes);
    let loaded = load_image(&path).unwrap();
    assert_eq!(loaded.format, ImageFormat::Png);
    assert_eq!(loaded.image, gradient(5, 4));
    let expected: [u8; 32] = Sha256::digest(&bytes).into();
    assert_eq!(loaded.sha256, expected);
    assert_eq!(loaded.sha256_hex(), hex::encode(expected));
    assert_eq!(loaded.file_bytes, bytes.len() as u64);
    assert_eq!(loaded.original_color, image::ExtendedColorType::Rgb8);

    // And a JPEG named .png.
    let path = write(dir.path(), "misnamed.png", &jpeg(6, 3));
    let loaded = load_image(&path).unwrap();
    assert_eq!(loaded.format, ImageFormat::Jpeg);
    assert_eq!((loaded.image.width(), loaded.image.height()), (6, 3));
}

#[test]
fn every_supported_format_decodes() {
    let dir = tempfile::tempdir().unwrap();
    let source = gradient(7, 5);
    let rgba = DynamicImage::ImageRgba8(source.to_rgba8());
    for (format, image, lossless) in [
        (ImageFormat::Png, &source, true),
        (ImageFormat::Jpeg, &source, false),
        (ImageFormat::WebP, &rgba, true),
        (ImageFormat::Bmp, &source, true),
        (ImageFormat::Tiff, &source, true),
        (ImageFormat::Gif, &rgba, false),
    ] {
        let path = write(dir.path(), "img.bin", &encode(image, format));
        let loaded = load_image(&path).unwrap();
        assert_eq!(loaded.format, format);
        assert_eq!((loaded.image.width(), loaded.image.height()), (7, 5));
        if lossless {
            assert_eq!(loaded.image.to_rgb8(), source.to_rgb8(), "{format:?}");
        }
    }
}

#[test]
fn one_pixel_sixteen_bit_gray_and_alpha_keep_their_colour_type() {
    let dir = tempfile::tempdir().unwrap();

    let path = write(dir.path(), "1x1.png", &png(1, 1));
    let loaded = load_image(&path).unwrap();
    assert_eq!((loaded.image.width(), loaded.image.height()), (1, 1));

    let sixteen = DynamicImage::ImageRgb16(image::ImageBuffer::from_fn(3, 2, |x, y| {
        Rgb([x as u16 * 20000, y as u16 * 60000, 513])
    }));
    let path = write(dir.path(), "16.png", &encode(&sixteen, ImageFormat::Png));
    let loaded = load_image(&path).unwrap();
    assert_eq!(loaded.original_color, image::ExtendedColorType::Rgb16);
    assert_eq!(loaded.image, sixteen);

    let gray = DynamicImage::ImageLuma8(gradient(4, 4).to_luma8());
    let path = write(dir.path(), "gray.png", &encode(&gray, ImageFormat::Png));
    let loaded = load_image(&path).unwrap();
    assert_eq!(loaded.original_color, image::ExtendedColorType::L8);
    assert!(!loaded.image.color().has_color());

    let alpha = DynamicImage::ImageRgba8(RgbaImage::from_fn(4, 4, |x, _| {
        Rgba([200, 10, 10, (x * 80) as u8])
    }));
    let path = write(dir.path(), "alpha.png", &encode(&alpha, ImageFormat::Png));
    let loaded = load_image(&path).unwrap();
    assert!(loaded.image.color().has_alpha());
    assert_eq!(loaded.image, alpha);
}

#[test]
fn animated_gif_gives_its_first_frame() {
    use image::codecs::gif::{GifEncoder, Repeat};
    use image::{Delay, Frame};
    let frame = |colour: [u8; 4]| {
        Frame::from_parts(
            RgbaImage::from_pixel(6, 4, Rgba(colour)),
            0,
            0,
            Delay::from_numer_denom_ms(100, 1),
        )
    };
    let mut bytes = Vec::new();
    {
        let mut encoder = GifEncoder::new(&mut bytes);
        encoder.set_repeat(Repeat::Infinite).unwrap();
        encoder
            .encode_frames([frame([255, 0, 0, 255]), frame([0, 0, 255, 255])])
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "anim.gif", &bytes);
    let loaded = load_image(&path).unwrap();
    assert_eq!(loaded.format, ImageFormat::Gif);
    assert_eq!((loaded.image.width(), loaded.image.height()), (6, 4));
    let rgb = loaded.image.to_rgb8();
    assert!(rgb.pixels().all(|pixel| *pixel == Rgb([255, 0, 0])));
}

#[test]
fn cmyk_jpeg_is_converted_to_rgb_and_reported_as_cmyk() {
    let loaded = load_image(&fixture("cmyk.jpg")).unwrap();
    assert_eq!(loaded.format, ImageFormat::Jpeg);
    assert_eq!(loaded.original_color, image::ExtendedColorType::Cmyk8);
    let ours = loaded.image.to_rgb8();
    let pillow = image::open(fixture("cmyk_pillow_rgb.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!(ours.dimensions(), (8, 8));
    let worst = ours
        .as_raw()
        .iter()
        .zip(pillow.as_raw())
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap();
    assert!(worst <= 2, "CMYK conversion differs from Pillow by {worst}");
}

#[test]
fn exif_orientation_is_applied_at_decode_in_all_eight_cases() {
    // A 5x3 image whose every pixel differs, stored under each orientation tag; the expected
    // upright image follows the EXIF definition of each tag, written out pixel by pixel here
    // rather than taken from the library under test.
    let (w, h) = (5u32, 3u32);
    let stored = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8 * 40, y as u8 * 80, 7]));
    let at = |x: u32, y: u32| *stored.get_pixel(x, y);
    for tag in 1u16..=8 {
        let (dw, dh) = if tag >= 5 { (h, w) } else { (w, h) };
        let expected = image::RgbImage::from_fn(dw, dh, |x, y| match tag {
            1 => at(x, y),
            2 => at(w - 1 - x, y),
            3 => at(w - 1 - x, h - 1 - y),
            4 => at(x, h - 1 - y),
            5 => at(y, x),
            6 => at(y, h - 1 - x),
            7 => at(w - 1 - y, h - 1 - x),
            _ => at(w - 1 - y, x),
        });
        let dir = tempfile::tempdir().unwrap();
        let bytes =
            common::png_with_orientation(&image::DynamicImage::ImageRgb8(stored.clone()), tag);
        let path = write(dir.path(), "photo.png", &bytes);
        let loaded = load_image(&path).unwrap();
        assert_eq!(loaded.image.to_rgb8(), expected, "orientation {tag}");
        assert_eq!(
            loaded.sha256,
            <[u8; 32]>::from(Sha256::digest(&bytes)),
            "hash of the file as read"
        );
    }
    // A JPEG's tag is applied too.
    let loaded = load_image(&fixture("orientation6.jpg")).unwrap();
    assert_eq!(loaded.orientation, image::metadata::Orientation::Rotate90);
    assert_eq!((loaded.image.width(), loaded.image.height()), (2, 4));
    let plain = load_image(&fixture("cmyk.jpg")).unwrap();
    assert_eq!(
        plain.orientation,
        image::metadata::Orientation::NoTransforms
    );
}

// ---------- load_image: bad inputs ----------

#[test]
fn zero_byte_file_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "empty.png", b"");
    assert!(matches!(load_error(&path), InputErrorKind::Empty));
}

#[test]
fn text_named_png_is_not_an_image() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "notes.png", b"name,age\nalice,34\n");
    let kind = load_error(&path);
    assert!(matches!(kind, InputErrorKind::UnknownFormat), "{kind:?}");
    assert!(kind.to_string().contains("not a recognised image"));
}

#[test]
fn truncated_png_and_jpeg_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let whole = png(64, 64);
    for keep in [8, 30, whole.len() / 2, whole.len() - 13] {
        let path = write(dir.path(), "cut.png", &whole[..keep]);
        let kind = load_error(&path);
        assert!(
            matches!(kind, InputErrorKind::Truncated { .. }),
            "{keep}: {kind:?}"
        );
    }
    let path = write(dir.path(), "cut.png", &whole[..whole.len() / 2]);
    assert!(matches!(
        load_error(&path),
        InputErrorKind::Truncated { .. }
    ));

    let whole = jpeg(64, 64);
    for keep in [3, 100, whole.len() / 2, whole.len() - 2] {
        let path = write(dir.path(), "cut.jpg", &whole[..keep]);
        let kind = load_error(&path);
        assert!(
            matches!(kind, InputErrorKind::Truncated { .. }),
            "{keep}: {kind:?}"
        );
    }
    let path = write(dir.path(), "cut.jpg", &whole[..whole.len() / 2]);
    assert_eq!(
        load_error(&path).to_string(),
        "truncated JPEG (the data ends early)"
    );

    // Bytes after the end marker are not truncation.
    let mut padded = whole.clone();
    padded.extend_from_slice(b"trailing junk");
    let path = write(dir.path(), "padded.jpg", &padded);
    assert!(load_image(&path).is_ok());
}

/// A valid small PNG whose header claims another size, bit depth and colour type.
fn png_declaring(width: u32, height: u32, bit_depth: u8, colour_type: u8) -> Vec<u8> {
    let mut bytes = png(2, 2);
    // Signature (8), length (4), "IHDR" (4), then width, height, depth, colour type.
    bytes[16..20].copy_from_slice(&width.to_be_bytes());
    bytes[20..24].copy_from_slice(&height.to_be_bytes());
    bytes[24] = bit_depth;
    bytes[25] = colour_type;
    let crc = crc32(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    bytes
}

#[test]
fn decompression_bombs_are_refused_from_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let too_large = |kind: &InputErrorKind| matches!(kind, InputErrorKind::TooLarge { .. });

    let path = write(
        dir.path(),
        "bomb.png",
        &png_declaring(100_000, 100_000, 8, 2),
    );
    let kind = load_error(&path);
    assert!(too_large(&kind), "{kind:?}");
    assert!(kind.to_string().contains("16384x16384"));

    // JPEG: patch the frame header of a real file to 60000 x 60000.
    let mut bytes = jpeg(8, 8);
    let sof = bytes
        .windows(2)
        .position(|pair| pair == [0xFF, 0xC0])
        .unwrap();
    bytes[sof + 5..sof + 7].copy_from_slice(&60_000u16.to_be_bytes());
    bytes[sof + 7..sof + 9].copy_from_slice(&60_000u16.to_be_bytes());
    let path = write(dir.path(), "bomb.jpg", &bytes);
    let kind = load_error(&path);
    assert!(too_large(&kind), "{kind:?}");

    // GIF: logical screen and first image descriptor claim 65535 x 65535.
    let mut bytes = encode(
        &DynamicImage::ImageRgba8(RgbaImage::new(2, 2)),
        ImageFormat::Gif,
    );
    bytes[6..10].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
    let descriptor = bytes.iter().position(|&byte| byte == 0x2C).unwrap();
    bytes[descriptor + 5..descriptor + 9].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
    let path = write(dir.path(), "bomb.gif", &bytes);
    let kind = load_error(&path);
    assert!(too_large(&kind), "{kind:?}");

    // BMP: the info header's width and height (under the decoder's own 65535 cap).
    let mut bytes = encode(&gradient(2, 2), ImageFormat::Bmp);
    bytes[18..22].copy_from_slice(&30_000i32.to_le_bytes());
    bytes[22..26].copy_from_slice(&30_000i32.to_le_bytes());
    let path = write(dir.path(), "bomb.bmp", &bytes);
    let kind = load_error(&path);
    assert!(too_large(&kind), "{kind:?}");

    // Within the side limit but 16000 x 16000 16-bit RGBA is 2 GiB of pixels.
    let path = write(
        dir.path(),
        "wide.png",
        &png_declaring(16_000, 16_000, 16, 6),
    );
    let kind = load_error(&path);
    assert!(
        matches!(kind, InputErrorKind::TooMuchMemory { limit } if limit == 512 << 20),
        "{kind:?}"
    );
}

#[test]
fn file_over_the_byte_limit_is_refused_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = png(16, 16);
    let path = write(dir.path(), "big.png", &bytes);
    let limits = DecodeLimits {
        max_file_bytes: 10,
        ..DecodeLimits::default()
    };
    let error = load_image_with_limits(&path, &limits).unwrap_err();
    assert!(
        matches!(error.kind, InputErrorKind::FileTooLarge { bytes: b, limit: 10 } if b == bytes.len() as u64),
        "{error:?}"
    );
    assert!(load_image(&path).is_ok());
}

#[test]
fn unreadable_paths_are_read_errors() {
    let dir = tempfile::tempdir().unwrap();
    let kind = load_error(&dir.path().join("gone.png"));
    assert!(matches!(kind, InputErrorKind::Read(_)), "{kind:?}");
    assert!(kind.to_string().starts_with("cannot read the file"));
    let folder = dir.path().join("folder.png");
    fs::create_dir(&folder).unwrap();
    assert!(matches!(load_error(&folder), InputErrorKind::Read(_)));

    let path = write(dir.path(), "locked.png", &png(2, 2));
    fs::set_permissions(&path, fs::Permissions::from_mode(0o000)).unwrap();
    // root (CI containers) reads through mode 000; the assertion then is that it loads.
    if fs::read(&path).is_ok() {
        assert!(load_image(&path).is_ok());
    } else {
        let kind = load_error(&path);
        assert!(matches!(kind, InputErrorKind::Read(_)), "{kind:?}");
    }
}

// ---------- folders ----------

#[test]
fn folder_relations_that_could_lose_data_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("data");
    write(&input, "cats/a.png", b"x");

    let refused = |output: &Path| check_folders(&input, output).unwrap_err();
    assert!(matches!(refused(&input), DatasetError::SameFolder { .. }));
    assert!(matches!(
        refused(&input.join("cats/../.")),
        DatasetError::SameFolder { .. }
    ));
    assert!(matches!(
        refused(&input.join("cats")),
        DatasetError::OutputInsideInput { .. }
    ));
    // Not existing yet, several levels deep, with `..` in the missing part.
    assert!(matches!(
        refused(&input.join("new/deeper/../out")),
        DatasetError::OutputInsideInput { .. }
    ));
    assert!(matches!(
        refused(dir.path()),
        DatasetError::InputInsideOutput { .. }
    ));
    // Through a symlink that points into IN.
    symlink(&input, dir.path().join("link")).unwrap();
    assert!(matches!(
        refused(&dir.path().join("link/fresh")),
        DatasetError::OutputInsideInput { .. }
    ));
    // A dangling symlink is not a free name.
    symlink(input.join("nowhere"), dir.path().join("dangling")).unwrap();
    assert!(check_folders(&input, &dir.path().join("dangling")).is_err());
    // Existing file as OUT.
    let file = write(dir.path(), "file", b"x");
    assert!(matches!(
        refused(&file),
        DatasetError::OutputNotFolder { .. }
    ));

    let error = refused(&input.join("out"));
    let message = error.to_string();
    assert!(message.contains("inside input"), "{message}");
    assert!(
        message.contains("choose an output folder outside it"),
        "{message}"
    );

    // A name sharing a prefix is a different folder.
    check_folders(&input, &dir.path().join("data2")).unwrap();
    check_folders(&input, &dir.path().join("out/nested")).unwrap();

    assert!(matches!(
        check_folders(&dir.path().join("missing"), &dir.path().join("o")),
        Err(DatasetError::InputMissing { .. })
    ));
    assert!(matches!(
        check_folders(&file, &dir.path().join("o")),
        Err(DatasetError::InputNotFolder { .. })
    ));
}

#[test]
fn relative_paths_are_compared_resolved() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "data/a.png", b"x");
    let in_dir = dir.path().join("data");
    // `data/../data/out` relative to `data`'s parent.
    let output = in_dir.join("..").join("data").join("out");
    assert!(matches!(
        check_folders(&in_dir, &output),
        Err(DatasetError::OutputInsideInput { .. })
    ));
    // Relative to the current folder (the crate root under cargo test); nothing is created.
    assert!(matches!(
        check_folders(Path::new("tests"), Path::new(".")),
        Err(DatasetError::InputInsideOutput { .. })
    ));
    assert!(matches!(
        check_folders(Path::new("tests"), Path::new("tests/../tests/not-yet/out")),
        Err(DatasetError::OutputInsideInput { .. })
    ));
    check_folders(Path::new("tests"), Path::new("not-yet-an-output")).unwrap();
}

#[test]
fn output_emptiness() {
    let dir = tempfile::tempdir().unwrap();
    assert!(output_is_empty(&dir.path().join("new")).unwrap());
    assert!(output_is_empty(dir.path()).unwrap());
    let hidden = write(dir.path(), ".partial", b"");
    assert!(!output_is_empty(dir.path()).unwrap());
    assert!(matches!(
        output_is_empty(&hidden),
        Err(DatasetError::OutputNotFolder { .. })
    ));
}

// ---------- output names ----------

#[test]
fn output_keeps_folders_and_becomes_png() {
    assert_eq!(
        output_relative(Path::new("cats/tabby.01.JPG"), None),
        Path::new("cats/tabby.01.png")
    );
    assert_eq!(
        output_relative(Path::new("a.png"), None),
        Path::new("a.png")
    );
}

#[test]
fn renamed_stems_are_keyed_stable_and_keep_class_folders() {
    let path = Path::new("George_W_Bush/George_W_Bush_0001.jpg");
    let key = NameKey::from_run_seed(42);
    let renamed = output_relative(path, Some(&key));
    // Pinned: HMAC-SHA256(SHA-256("boomerang/file-names/v1" || 42u64 LE), length-prefixed
    // components), first 8 bytes (computed with Python's hmac module). A change here renames
    // every output of an existing run, which breaks --resume.
    assert_eq!(renamed, Path::new("George_W_Bush/7b0e0b42807b89be.png"));
    assert_eq!(
        output_relative(Path::new("a.png"), Some(&NameKey::from_run_seed(0))),
        Path::new("80f4e33335eddf1c.png")
    );
    assert_eq!(
        output_relative(path, Some(&NameKey::from_run_seed(42))),
        renamed
    );
    assert_ne!(
        output_relative(path, Some(&NameKey::from_run_seed(43))),
        renamed
    );
    // The stem depends on the whole relative path, so equal names in other folders differ.
    let a = output_relative(Path::new("x/1.jpg"), Some(&key));
    let b = output_relative(Path::new("y/1.jpg"), Some(&key));
    assert_ne!(a.file_name(), b.file_name());
    assert_eq!(format!("{key:?}"), "NameKey(<secret>)");
}

#[test]
fn renamed_folders_hide_class_names_and_keep_images_of_a_folder_together() {
    let key = NameKey::from_run_seed(42);
    let rename = |input: &str| {
        let input = Path::new(input);
        key.rename_folders(input, &output_relative(input, Some(&key)))
    };
    let first = rename("George_W_Bush/George_W_Bush_0001.jpg");
    let second = rename("George_W_Bush/George_W_Bush_0002.jpg");
    let other = rename("Laura_Bush/Laura_Bush_0001.jpg");
    // The folder is the keyed name of the folder's path; the file keeps its keyed stem.
    assert_eq!(
        first,
        Path::new(&key.stem_for(Path::new("George_W_Bush"))).join("7b0e0b42807b89be.png")
    );
    assert_eq!(first.parent(), second.parent());
    assert_ne!(first.parent(), other.parent());
    assert!(!first.to_string_lossy().contains("Bush"));
    // Nested folders are renamed level by level; a file at the top stays at the top.
    let nested = rename("people/George_W_Bush/x.jpg");
    let parts: Vec<_> = nested.components().collect();
    assert_eq!(parts.len(), 3);
    assert_eq!(
        Path::new(parts[0].as_os_str()),
        Path::new(&key.stem_for(Path::new("people")))
    );
    assert_ne!(parts[1].as_os_str(), first.parent().unwrap().as_os_str());
    assert_eq!(rename("top.jpg").components().count(), 1);
    // Without renamed files the stems stay, only folders change.
    let kept = key.rename_folders(
        Path::new("George_W_Bush/a.jpg"),
        &output_relative(Path::new("George_W_Bush/a.jpg"), None),
    );
    assert_eq!(kept.file_name().unwrap(), "a.png");
    assert_eq!(kept.parent(), first.parent());
}

#[test]
fn colliding_outputs_skip_the_later_input() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "cats/a.jpg",
        "cats/a.png",
        "cats/b.png",
        "x.jpg",
        "x.png/y.jpg",
        "p.png/q.jpg",
        "p.tif",
    ] {
        write(dir.path(), name, b"x");
    }
    let entries = walk(dir.path()).unwrap();
    let plan = plan_outputs(entries.clone(), None);
    let actions: Vec<(String, Action)> = plan
        .iter()
        .map(|planned| {
            (
                planned.relative.display().to_string(),
                planned.action.clone(),
            )
        })
        .collect();
    let process = |output: &str| Action::Process {
        output: PathBuf::from(output),
    };
    let clash = |output: &str, earlier: &str| {
        Action::Skip(SkipReason::OutputCollision {
            output: PathBuf::from(output),
            earlier: PathBuf::from(earlier),
        })
    };
    assert_eq!(
        actions,
        vec![
            ("cats/a.jpg".to_string(), process("cats/a.png")),
            ("cats/a.png".to_string(), clash("cats/a.png", "cats/a.jpg")),
            ("cats/b.png".to_string(), process("cats/b.png")),
            // The folder p.png is needed first, so the file p.tif cannot become p.png.
            ("p.png/q.jpg".to_string(), process("p.png/q.png")),
            ("p.tif".to_string(), clash("p.png", "p.png/q.jpg")),
            // The file x.png is written first, so x.png/ cannot be a folder.
            ("x.jpg".to_string(), process("x.png")),
            ("x.png/y.jpg".to_string(), clash("x.png/y.png", "x.jpg")),
        ]
    );
    let reason = match &actions[1].1 {
        Action::Skip(reason) => reason.to_string(),
        other => panic!("{other:?}"),
    };
    assert!(reason.contains("cats/a.jpg"), "{reason}");

    // Renaming separates them all.
    let renamed = plan_outputs(entries, Some(&NameKey::from_run_seed(7)));
    assert!(renamed
        .iter()
        .all(|planned| matches!(planned.action, Action::Process { .. })));
}

#[test]
fn skipped_entries_pass_through_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.txt", b"x");
    let plan = plan_outputs(walk(dir.path()).unwrap(), None);
    assert_eq!(
        plan[0].action,
        Action::Skip(SkipReason::NotImageExtension(Some("txt".into())))
    );
}
