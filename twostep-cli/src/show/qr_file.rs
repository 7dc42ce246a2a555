//! The QR code of an `otpauth://` URI as a PNG or SVG file for printing (`--qr-png`,
//! `--qr-svg`), and as an SVG document for `--json`. The CLI's alone: the encoding is common's
//! ([`qr::file_code`], [`qr::Bitmap`]), but the PNG encoder and SVG renderer stay out of the
//! PAM module's dependencies.
//!
//! Files have a 4-module quiet zone and [`FILE_PX_PER_MODULE`] pixels per module. They hold the
//! TOTP secret, so they are created with mode 0600, never overwrite an existing file and never
//! follow a symlink in the last path component (`O_CREAT|O_EXCL|O_NOFOLLOW`).

use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use qrcode::QrCode;
use qrcode::render::svg;
use twostep_common::qr::{self, Bitmap, QUIET_ZONE, QrError};
use zeroize::Zeroizing;

/// Pixels per module (side length) in PNG and SVG files.
pub const FILE_PX_PER_MODULE: u32 = 8;

/// Why a QR code file could not be made or written.
#[derive(Debug)]
pub enum FileError {
    /// No QR code for the text.
    Code(QrError),
    /// The output file could not be created or written.
    Write {
        /// The file asked for.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
}

impl From<QrError> for FileError {
    fn from(e: QrError) -> Self {
        Self::Code(e)
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Code(e) => e.fmt(f),
            Self::Write { path, source } if source.kind() == io::ErrorKind::AlreadyExists => {
                write!(
                    f,
                    "cannot write {}: it already exists (not overwriting, not following symlinks)",
                    path.display()
                )
            }
            Self::Write { path, source } => {
                write!(f, "cannot write {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for FileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Code(e) => Some(e),
            Self::Write { source, .. } => Some(source),
        }
    }
}

/// Writes the QR code of `text` as a black-and-white PNG to a new file at `path` (mode 0600).
pub fn write_png(text: &str, path: &Path) -> Result<(), FileError> {
    let bitmap = Bitmap::from_code(&qr::file_code(text)?, QUIET_ZONE);
    let png = png_bytes(&bitmap, FILE_PX_PER_MODULE).map_err(|e| FileError::Write {
        path: path.to_owned(),
        source: io::Error::other(e),
    })?;
    write_new_private_file(path, &png)
}

/// The QR code of `text` as an SVG document (what `write_svg` writes), for `--json` output.
pub fn svg_document(text: &str) -> Result<Zeroizing<String>, QrError> {
    Ok(Zeroizing::new(svg_string(&qr::file_code(text)?)))
}

/// Writes the QR code of `text` as an SVG to a new file at `path` (mode 0600).
pub fn write_svg(text: &str, path: &Path) -> Result<(), FileError> {
    let svg = svg_string(&qr::file_code(text)?);
    write_new_private_file(path, svg.as_bytes())
}

/// 1-bit greyscale PNG, `scale` pixels per module (the smallest PNG for a black-and-white
/// picture, and what every printer and viewer reads).
fn png_bytes(bitmap: &Bitmap, scale: u32) -> Result<Vec<u8>, png::EncodingError> {
    let module_px = scale as usize;
    let side_px = bitmap.size * module_px;
    let side = u32::try_from(side_px).map_err(|_| {
        png::EncodingError::LimitsExceeded // unreachable for real QR codes (≤ 185 modules)
    })?;
    let row_bytes = side_px.div_ceil(8);
    let mut data = vec![0u8; row_bytes * side_px];
    for y in 0..side_px {
        let row = &mut data[y * row_bytes..(y + 1) * row_bytes];
        for x in 0..side_px {
            // In 1-bit greyscale, 1 is white.
            if !bitmap.is_dark(x / module_px, y / module_px) {
                row[x / 8] |= 0x80 >> (x % 8);
            }
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side, side);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::One);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&data)?;
    writer.finish()?;
    Ok(out)
}

fn svg_string(code: &QrCode) -> String {
    code.render::<svg::Color<'_>>()
        .quiet_zone(true) // 4 modules for (non-micro) QR codes
        .module_dimensions(FILE_PX_PER_MODULE, FILE_PX_PER_MODULE)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build()
}

/// Creates `path` with mode 0600 (less the umask); fails if anything exists there, including a
/// (dangling) symlink. Symlinks in the directories above it are followed as usual. A file it
/// created but could not fill is removed.
fn write_new_private_file(path: &Path, contents: &[u8]) -> Result<(), FileError> {
    let error = |source| FileError::Write {
        path: path.to_owned(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true) // O_CREAT | O_EXCL
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(0o600)
        .open(path)
        .map_err(error)?;
    if let Err(e) = file.write_all(contents).and_then(|()| file.sync_all()) {
        drop(file);
        // Ours by O_EXCL, so safe to remove; a failure here leaves only a partial file.
        let _ = std::fs::remove_file(path);
        return Err(error(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use qrcode::Color;
    use std::os::unix::fs::PermissionsExt;

    use twostep_testkit::qr_decode::{EXAMPLE, TempDir, uri_of_len, zbar_decode};

    /// Decodes a bitmap by writing it as a PNG (8 px per module) and running zbarimg.
    fn zbar_decode_bitmap(bitmap: &Bitmap) -> String {
        let dir = TempDir::new();
        let path = dir.0.join("bitmap.png");
        std::fs::write(&path, png_bytes(bitmap, 8).unwrap()).unwrap();
        zbar_decode(&path)
    }

    #[test]
    fn too_long_texts_are_errors() {
        let text = "x".repeat(3000);
        let dir = TempDir::new();
        let path = dir.0.join("long.png");
        for result in [write_png(&text, &path), write_svg(&text, &path)] {
            let e = result.unwrap_err();
            assert!(
                matches!(e, FileError::Code(QrError::TooLong { len: 3000 })),
                "{e:?}"
            );
            assert_eq!(
                e.to_string(),
                "text of 3000 bytes is too long for a QR code"
            );
        }
        assert!(svg_document(&text).is_err());
        assert!(!path.exists());
    }

    #[test]
    fn png_scans_back_to_the_uri() {
        let dir = TempDir::new();
        for uri in [EXAMPLE.to_owned(), uri_of_len(200), uri_of_len(600)] {
            let path = dir.0.join(format!("{}.png", uri.len()));
            write_png(&uri, &path).unwrap();
            assert_eq!(zbar_decode(&path), uri);
            let meta = std::fs::metadata(&path).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, 0o600);
            // 8 px per module and a 4-module quiet zone.
            let decoder =
                png::Decoder::new(io::BufReader::new(std::fs::File::open(&path).unwrap()));
            let info = decoder.read_info().unwrap().info().clone();
            let modules = qr::file_code(&uri).unwrap().width() + 8;
            assert_eq!(info.width as usize, modules * 8);
            assert_eq!(info.height as usize, modules * 8);
        }
    }

    /// The modules of the SVG from [`svg_string`], read from its one `<path>` of rectangles
    /// (`M x y h w v h H x V y` per rectangle) over a white `<rect>`.
    fn parse_svg(svg: &str) -> Bitmap {
        let doc = roxmltree::Document::parse(svg).unwrap();
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "svg");
        assert_eq!(
            root.tag_name().namespace(),
            Some("http://www.w3.org/2000/svg")
        );
        let px: usize = root.attribute("width").unwrap().parse().unwrap();
        assert_eq!(root.attribute("height"), root.attribute("width"));
        assert_eq!(root.attribute("viewBox"), Some(&*format!("0 0 {px} {px}")));
        let unit = FILE_PX_PER_MODULE as usize;
        assert_eq!(px % unit, 0);
        let size = px / unit;

        let elements: Vec<_> = root.children().filter(|n| n.is_element()).collect();
        assert_eq!(elements.len(), 2);
        let (rect, path) = (elements[0], elements[1]);
        assert_eq!(rect.tag_name().name(), "rect");
        assert_eq!(rect.attribute("fill"), Some("#ffffff"));
        assert_eq!(rect.attribute("width"), Some(&*px.to_string()));
        assert_eq!(path.tag_name().name(), "path");
        assert_eq!(path.attribute("fill"), Some("#000000"));

        let mut pixels = vec![false; px * px];
        let d = path.attribute("d").unwrap();
        let mut subpaths = d.split('M').filter(|s| !s.is_empty());
        for sub in subpaths.by_ref() {
            // "x y" "hw" "vh" "Hx" "Vy"
            let mut tokens = sub.split(|c: char| c.is_ascii_alphabetic());
            let start: Vec<usize> = tokens
                .next()
                .unwrap()
                .split(' ')
                .map(|n| n.parse().unwrap())
                .collect();
            let ops: Vec<(char, usize)> = sub
                .match_indices(|c: char| c.is_ascii_alphabetic())
                .zip(tokens)
                .map(|((_, op), n)| (op.chars().next().unwrap(), n.parse().unwrap()))
                .collect();
            let (x, y) = (start[0], start[1]);
            let [('h', w), ('v', h), ('H', x2), ('V', y2)] = ops[..] else {
                panic!("not a rectangle: M{sub}");
            };
            assert_eq!((x2, y2), (x, y), "rectangle not closed: M{sub}");
            for row in y..y + h {
                for col in x..x + w {
                    assert!(!pixels[row * px + col], "overlapping rectangles");
                    pixels[row * px + col] = true;
                }
            }
        }
        // Every module is one colour throughout.
        let mut dark = vec![false; size * size];
        for my in 0..size {
            for mx in 0..size {
                let value = pixels[my * unit * px + mx * unit];
                for y in my * unit..(my + 1) * unit {
                    for x in mx * unit..(mx + 1) * unit {
                        assert_eq!(pixels[y * px + x], value, "module ({mx}, {my}) not uniform");
                    }
                }
                dark[my * size + mx] = value;
            }
        }
        Bitmap { size, dark }
    }

    // The SVG is checked twice. zbarimg reads it directly through ImageMagick's SVG coder
    // (present with Debian 12's zbar-tools). And, independently of any renderer, it is parsed:
    // well-formed XML, a white background, and black rectangles exactly covering the dark
    // modules of the code with a 4-module quiet zone; those modules, rasterised to PNG here,
    // must scan back to the URI too.
    #[test]
    fn svg_holds_exactly_the_code_and_scans_back_to_the_uri() {
        let dir = TempDir::new();
        for uri in [EXAMPLE.to_owned(), uri_of_len(200)] {
            let path = dir.0.join(format!("{}.svg", uri.len()));
            write_svg(&uri, &path).unwrap();
            let meta = std::fs::metadata(&path).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, 0o600);
            assert_eq!(zbar_decode(&path), uri);
            let bitmap = parse_svg(&std::fs::read_to_string(&path).unwrap());
            let code = qr::file_code(&uri).unwrap();
            let expected = Bitmap::from_code(&code, 4);
            let dark_modules = code
                .to_colors()
                .iter()
                .filter(|&&c| c == Color::Dark)
                .count();
            assert_eq!(bitmap.dark.iter().filter(|&&d| d).count(), dark_modules);
            assert_eq!(bitmap, expected);
            assert_eq!(zbar_decode_bitmap(&bitmap), uri);
        }
    }

    #[test]
    fn files_are_never_overwritten_nor_symlinks_followed() {
        let dir = TempDir::new();
        let existing = dir.0.join("existing");
        std::fs::write(&existing, "keep me").unwrap();
        let dangling = dir.0.join("dangling");
        let target = dir.0.join("target");
        std::os::unix::fs::symlink(&target, &dangling).unwrap();
        let to_existing = dir.0.join("to-existing");
        std::os::unix::fs::symlink(&existing, &to_existing).unwrap();

        type Writer = fn(&str, &Path) -> Result<(), FileError>;
        for write in [write_png as Writer, write_svg as Writer] {
            for path in [&existing, &dangling, &to_existing] {
                match write(EXAMPLE, path) {
                    Err(e @ FileError::Write { .. }) => {
                        let message = e.to_string();
                        assert!(message.starts_with("cannot write "), "{message}");
                        assert!(message.contains(&*path.to_string_lossy()), "{message}");
                        assert!(message.contains("already exists"), "{message}");
                    }
                    other => panic!("{}: {other:?}", path.display()),
                }
            }
        }
        assert_eq!(std::fs::read_to_string(&existing).unwrap(), "keep me");
        assert!(!target.exists());

        let e = write_png(EXAMPLE, &dir.0.join("no-such-dir/qr.png")).unwrap_err();
        assert!(e.to_string().contains("No such file or directory"), "{e}");
    }
}
