//! QR codes for `otpauth://` URIs on the terminal, and the encoding the CLI's PNG and SVG files
//! (`twostep-cli/src/qr_file.rs`) are drawn from.
//!
//! `twostep enroll` and `twostep show-qr` show the URI so a phone authenticator app can scan it;
//! enrollment at login (in the PAM module) shows the plain terminal code. The file writers and
//! their `png` encoder and SVG renderer are the CLI's alone, out of the module's dependencies.
//!
//! # Terminal output
//!
//! Each text line holds two QR rows drawn with Unicode half blocks: `▀` (top module dark),
//! `▄` (bottom module dark), `█` (both dark) and a space (both light). The symbol has the
//! standard 4-module quiet zone and must fit in [`TERMINAL_COLUMNS`] columns; level M is used
//! when it fits, else level L, and only when even that is too wide the quiet zone shrinks to
//! no less than 2 modules. Typical URIs (130–200 characters) give version 8–10: 57–65 columns,
//! 29–33 lines.
//!
//! Two variants, which draw the same glyphs:
//!
//! * [`terminal`] wraps every line in explicit colours, dark modules black on bright white
//!   (`ESC[30;107m` … `ESC[0m`), so the code reads the same on dark and on light terminal
//!   themes. Use it when stdout is a terminal and `NO_COLOR` is unset or empty.
//! * [`terminal_plain`] has no escape codes. Use it when stdout is not a terminal (a pipe, a
//!   file, a mail) or when `NO_COLOR` is set to a non-empty value (<https://no-color.org>).
//!   Convention: glyphs are the *dark* modules and spaces the light ones ("ink on paper"), i.e.
//!   it is exactly [`terminal`] with the escapes removed. That is correct on light backgrounds,
//!   on paper and in most viewers a pipe or file ends up in; on a dark terminal it shows
//!   inverted (light-on-dark), which many but not all scanner apps accept. Callers should
//!   mention `--png`/`--svg` (or the secret itself) as the fallback.
//!
//! The half blocks are "East Asian ambiguous width": a terminal set to draw those double width
//! (some CJK locales) doubles the code's width. That cannot be fixed from here.
//!
//! # Files
//!
//! [`file_code`] is the code for files (no width limit) and [`Bitmap`] its modules with a quiet
//! zone of [`QUIET_ZONE`]; the CLI's `qr_file` writes them.

use std::fmt;

use qrcode::types::QrError as EncodeError;
use qrcode::{Color, EcLevel, QrCode};

/// Widest terminal output, in columns.
pub const TERMINAL_COLUMNS: usize = 80;

/// Quiet zone of the standard, in modules, used everywhere it fits (always in files).
pub const QUIET_ZONE: usize = 4;

/// Least quiet zone the terminal output falls back to when the standard one does not fit.
const MIN_TERMINAL_QUIET_ZONE: usize = 2;

/// Black foreground (dark modules) on bright white background (light modules).
const SGR_COLOURS: &str = "\x1b[30;107m";

/// Resets all attributes; ends every coloured line.
const SGR_RESET: &str = "\x1b[0m";

/// Why a QR code could not be made.
#[derive(Debug)]
pub enum QrError {
    /// The text does not fit in any QR code (at most 2953 bytes at level L).
    TooLong {
        /// Length of the text in bytes.
        len: usize,
    },
    /// The text fits in a QR code, but not in one narrow enough for the terminal.
    TooWideForTerminal {
        /// Length of the text in bytes.
        len: usize,
        /// Columns the smallest fitting code needs, with the least quiet zone.
        columns: usize,
    },
    /// The QR encoder failed for another reason (not expected for byte data).
    Encode(EncodeError),
}

impl fmt::Display for QrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLong { len } => {
                write!(f, "text of {len} bytes is too long for a QR code")
            }
            Self::TooWideForTerminal { len, columns } => write!(
                f,
                "text of {len} bytes needs a QR code {columns} columns wide, more than the \
                 terminal's {TERMINAL_COLUMNS}; write it to a PNG or SVG file instead"
            ),
            Self::Encode(e) => write!(f, "cannot make a QR code: {e}"),
        }
    }
}

impl std::error::Error for QrError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Encode(e) => Some(e),
            Self::TooLong { .. } | Self::TooWideForTerminal { .. } => None,
        }
    }
}

/// The QR code of `text` as coloured half-block lines (see the module docs), each ending in
/// `ESC[0m` and a newline.
pub fn terminal(text: &str) -> Result<String, QrError> {
    let bitmap = terminal_bitmap(text)?;
    let mut out = String::new();
    for line in half_block_lines(&bitmap) {
        out.push_str(SGR_COLOURS);
        out.push_str(&line);
        out.push_str(SGR_RESET);
        out.push('\n');
    }
    Ok(out)
}

/// The QR code of `text` as half-block lines without escape codes: glyphs dark, spaces light
/// (see the module docs for when to use it). Each line ends in a newline.
pub fn terminal_plain(text: &str) -> Result<String, QrError> {
    let bitmap = terminal_bitmap(text)?;
    let mut out = String::new();
    for line in half_block_lines(&bitmap) {
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}

/// A square of modules, quiet zone included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitmap {
    /// Modules per side.
    pub size: usize,
    /// Row-major, `true` = dark.
    pub dark: Vec<bool>,
}

impl Bitmap {
    /// `code`'s modules inside a light border `quiet_zone` modules wide.
    pub fn from_code(code: &QrCode, quiet_zone: usize) -> Self {
        let width = code.width();
        let size = width + 2 * quiet_zone;
        let mut dark = vec![false; size * size];
        for (i, color) in code.to_colors().into_iter().enumerate() {
            let (x, y) = (i % width + quiet_zone, i / width + quiet_zone);
            dark[y * size + x] = color == Color::Dark;
        }
        Self { size, dark }
    }

    /// Outside the square counts as light (more quiet zone).
    pub fn is_dark(&self, x: usize, y: usize) -> bool {
        x < self.size && y < self.size && self.dark[y * self.size + x]
    }
}

/// `Ok(None)` when `text` does not fit at `level`.
fn try_encode(text: &str, level: EcLevel) -> Result<Option<QrCode>, QrError> {
    match QrCode::with_error_correction_level(text.as_bytes(), level) {
        Ok(code) => Ok(Some(code)),
        Err(EncodeError::DataTooLong) => Ok(None),
        Err(e) => Err(QrError::Encode(e)),
    }
}

/// For files there is no width limit: level M, or L for texts too long for M.
pub fn file_code(text: &str) -> Result<QrCode, QrError> {
    for level in [EcLevel::M, EcLevel::L] {
        if let Some(code) = try_encode(text, level)? {
            return Ok(code);
        }
    }
    Err(QrError::TooLong { len: text.len() })
}

/// Level M with the full quiet zone if that fits the terminal, else level L with the largest
/// quiet zone (4 down to 2 modules) that fits.
fn terminal_bitmap(text: &str) -> Result<Bitmap, QrError> {
    let fits = |code: &QrCode, quiet_zone: usize| code.width() + 2 * quiet_zone <= TERMINAL_COLUMNS;
    if let Some(code) = try_encode(text, EcLevel::M)? {
        if fits(&code, QUIET_ZONE) {
            return Ok(Bitmap::from_code(&code, QUIET_ZONE));
        }
    }
    let Some(code) = try_encode(text, EcLevel::L)? else {
        return Err(QrError::TooLong { len: text.len() });
    };
    for quiet_zone in (MIN_TERMINAL_QUIET_ZONE..=QUIET_ZONE).rev() {
        if fits(&code, quiet_zone) {
            return Ok(Bitmap::from_code(&code, quiet_zone));
        }
    }
    Err(QrError::TooWideForTerminal {
        len: text.len(),
        columns: code.width() + 2 * MIN_TERMINAL_QUIET_ZONE,
    })
}

/// Two bitmap rows per line; an odd last row gets a light row below it.
fn half_block_lines(bitmap: &Bitmap) -> Vec<String> {
    (0..bitmap.size)
        .step_by(2)
        .map(|y| {
            (0..bitmap.size)
                .map(|x| match (bitmap.is_dark(x, y), bitmap.is_dark(x, y + 1)) {
                    (true, true) => '█',
                    (true, false) => '▀',
                    (false, true) => '▄',
                    (false, false) => ' ',
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use twostep_testkit::qr_decode::{EXAMPLE, TempDir, uri_of_len, zbar_decode};

    /// Decodes a bitmap by writing it as a plain PBM (netpbm's text bitmap, 8 px per module;
    /// no PNG encoder in this crate) and running zbarimg.
    fn zbar_decode_bitmap(bitmap: &Bitmap) -> String {
        let dir = TempDir::new();
        let path = dir.0.join("bitmap.pbm");
        let side = bitmap.size * 8;
        let mut pbm = format!("P1\n{side} {side}\n");
        for y in 0..side {
            for x in 0..side {
                // In PBM, 1 is black.
                pbm.push(if bitmap.is_dark(x / 8, y / 8) {
                    '1'
                } else {
                    '0'
                });
            }
            pbm.push('\n');
        }
        std::fs::write(&path, pbm).unwrap();
        zbar_decode(&path)
    }

    /// Removes `ESC [ … m` sequences.
    fn strip_sgr(text: &str) -> String {
        let mut out = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                assert_eq!(chars.next(), Some('['), "only SGR escapes expected");
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                    assert!(c.is_ascii_digit() || c == ';', "bad SGR character {c:?}");
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    /// Reads half-block text back into modules: ▀ top dark, ▄ bottom dark, █ both, space
    /// neither. Checks the text is square (an odd last row's lower half must be light).
    fn parse_half_blocks(text: &str) -> Bitmap {
        let lines: Vec<Vec<char>> = text.lines().map(|l| l.chars().collect()).collect();
        let size = lines[0].len();
        assert!(lines.iter().all(|l| l.len() == size), "ragged lines");
        assert_eq!(lines.len(), size.div_ceil(2), "not square");
        let mut rows = vec![vec![false; size]; 2 * lines.len()];
        for (i, line) in lines.iter().enumerate() {
            for (x, c) in line.iter().enumerate() {
                let (top, bottom) = match c {
                    '█' => (true, true),
                    '▀' => (true, false),
                    '▄' => (false, true),
                    ' ' => (false, false),
                    _ => panic!("unexpected character {c:?}"),
                };
                rows[2 * i][x] = top;
                rows[2 * i + 1][x] = bottom;
            }
        }
        if rows.len() > size {
            assert!(
                rows.pop().unwrap().iter().all(|d| !d),
                "padding row not light"
            );
        }
        Bitmap {
            size,
            dark: rows.concat(),
        }
    }

    /// Light modules around the code, from each edge.
    fn quiet_zone(bitmap: &Bitmap) -> usize {
        (0..bitmap.size)
            .take_while(|&y| (0..bitmap.size).all(|x| !bitmap.is_dark(x, y)))
            .count()
    }

    #[test]
    fn coloured_terminal_code_scans_back_to_the_uri() {
        for uri in [EXAMPLE.to_owned(), uri_of_len(130), uri_of_len(200)] {
            let text = terminal(&uri).unwrap();
            for line in text.lines() {
                assert!(line.starts_with("\x1b[30;107m"), "{line:?}");
                assert!(line.ends_with("\x1b[0m"), "{line:?}");
            }
            let bitmap = parse_half_blocks(&strip_sgr(&text));
            assert_eq!(quiet_zone(&bitmap), 4);
            assert_eq!(zbar_decode_bitmap(&bitmap), uri);
        }
    }

    #[test]
    fn plain_terminal_code_is_the_coloured_one_without_escapes() {
        for uri in [EXAMPLE.to_owned(), uri_of_len(200)] {
            let plain = terminal_plain(&uri).unwrap();
            assert!(!plain.contains('\x1b'));
            assert_eq!(plain, strip_sgr(&terminal(&uri).unwrap()));
            assert_eq!(zbar_decode_bitmap(&parse_half_blocks(&plain)), uri);
        }
    }

    #[test]
    fn terminal_code_fits_80_columns() {
        let uri = uri_of_len(200);
        for text in [terminal(&uri).unwrap(), terminal_plain(&uri).unwrap()] {
            for line in strip_sgr(&text).lines() {
                assert!(
                    line.chars().count() <= 80,
                    "{} columns",
                    line.chars().count()
                );
            }
        }
        // The example: level M, version ≤ 10, so at most 57 + 8 = 65 columns.
        let example = terminal_plain(EXAMPLE).unwrap();
        assert!(example.lines().all(|l| l.chars().count() <= 65));
    }

    #[test]
    fn longer_texts_shrink_the_quiet_zone_then_fail() {
        let mut last_ok = 0;
        let mut shrunk = false;
        for len in (130..=700).step_by(5) {
            let uri = uri_of_len(len);
            match terminal_plain(&uri) {
                Ok(text) => {
                    let bitmap = parse_half_blocks(&text);
                    assert!(bitmap.size <= 80);
                    let zone = quiet_zone(&bitmap);
                    assert!(zone >= 2, "{len}: quiet zone {zone}");
                    shrunk |= zone < 4;
                    last_ok = len;
                }
                Err(QrError::TooWideForTerminal { len: l, columns }) => {
                    assert_eq!(l, len);
                    assert!(columns > 80);
                }
                Err(e) => panic!("{len}: {e}"),
            }
        }
        assert!(shrunk, "no length needed a smaller quiet zone");
        assert!(
            (400..700).contains(&last_ok),
            "last fitting length {last_ok}"
        );
        // The longest one that fits still scans.
        let uri = uri_of_len(last_ok);
        assert_eq!(
            zbar_decode_bitmap(&parse_half_blocks(&terminal_plain(&uri).unwrap())),
            uri
        );
    }

    #[test]
    fn too_long_texts_are_errors() {
        let text = "x".repeat(3000);
        let e = terminal(&text).unwrap_err();
        assert!(matches!(e, QrError::TooLong { len: 3000 }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "text of 3000 bytes is too long for a QR code"
        );
        assert!(matches!(
            file_code(&text),
            Err(QrError::TooLong { len: 3000 })
        ));
        let e = terminal(&"x".repeat(1000)).unwrap_err();
        assert!(matches!(e, QrError::TooWideForTerminal { .. }), "{e:?}");
    }
}
