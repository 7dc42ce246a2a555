//! The TOML reader and writer for twostep's own files: the config, enrollment records and the
//! send helper's request.
//!
//! It reads TOML 1.1 except floats and date-times, which no setting or record field uses; those
//! are refused with "not supported" at their position. It writes the few shapes a record needs.
//!
//! Why not the `toml` and `serde` crates, which the first version used: in pam_twostep.so,
//! loaded into every sshd, sudo and login process, they were over 300 KB of a 1.2 MB module,
//! most of it serde code generated for each field type and float formatting tables. This file
//! compiles to a small fraction of that. `tests/toml_subset_diff.rs` and the `toml_subset` fuzz
//! target check it against the `toml` crate: what one accepts the other must accept, with the
//! same values.
//!
//! [`parse`] builds a [`Table`] tree that remembers where each key and value was; [`Fields`]
//! takes typed values out of it by name and reports what is left as unknown keys; [`Writer`]
//! writes `key = value` lines and table headers. No message quotes a value: records hold keys
//! and these messages are logged.

use std::collections::BTreeMap;
use std::fmt;

/// Values nested deeper than this (tables and arrays counted alike) are refused. It bounds the
/// parser's recursion and the tree's (dropping a tree recurses too); twostep's deepest value,
/// a failure time in `lockout.hosts`, is at depth 4.
pub const MAX_DEPTH: usize = 32;

/// A 1-based line and column (in characters). Line 0 means "the whole document".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Not TOML, or not what the reader asked for.
    Invalid,
    /// Valid TOML this codec refuses on purpose: floats, date-times, deep nesting.
    Unsupported,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub pos: Pos,
    pub kind: ErrorKind,
    pub message: String,
}

impl Error {
    fn invalid(pos: Pos, message: impl Into<String>) -> Error {
        Error {
            pos,
            kind: ErrorKind::Invalid,
            message: message.into(),
        }
    }

    fn unsupported(pos: Pos, message: impl Into<String>) -> Error {
        Error {
            pos,
            kind: ErrorKind::Unsupported,
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pos.line == 0 {
            f.write_str(&self.message)
        } else {
            write!(
                f,
                "line {}, column {}: {}",
                self.pos.line, self.pos.column, self.message
            )
        }
    }
}

impl std::error::Error for Error {}

/// Why [`Writer::finish`] failed: a number above TOML's signed 64-bit integers was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge;

impl fmt::Display for TooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number is too large to store (more than 9223372036854775807)")
    }
}

impl std::error::Error for TooLarge {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    String(String),
    Integer(i64),
    Boolean(bool),
    Array(Array),
    Table(Table),
}

/// A value and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Array {
    pub items: Vec<Node>,
    /// Made by `[[name]]` headers (which may add to it), not by `name = [...]`.
    of_tables: bool,
}

/// A table. The flags carry TOML's rules on which tables may be extended, and how.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Table {
    entries: BTreeMap<String, Entry>,
    /// Created only as the parent of something else; a `[header]` may still define it once.
    implicit: bool,
    /// Created or extended by a dotted key; no `[header]` may define it any more.
    dotted: bool,
    /// Written `{ ... }` (or created inside one): complete, nothing may extend it.
    inline: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    key_pos: Pos,
    node: Node,
}

impl Table {
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries.get(key).map(|e| &e.node)
    }

    /// Keys in sorted order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.entries.iter().map(|(k, e)| (k.as_str(), &e.node))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Parses a whole document.
pub fn parse(text: &str) -> Result<Table, Error> {
    Parser::new(text).document()
}

/// One part of a (possibly dotted) key.
#[derive(Debug)]
struct KeyPart {
    name: String,
    pos: Pos,
}

/// Where a key path is being followed: it decides what may be passed through or created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A `[header]` (or the current header's table, found again for each key).
    Header,
    /// The dotted key of a `key = value` line.
    Dotted,
    /// A dotted key inside `{ ... }`.
    Inline,
}

struct Parser<'a> {
    src: &'a str,
    at: usize,
    /// Where the byte-order mark, if any, ends; positions count from there.
    base: usize,
    /// Line and column of `cursor_at`. Positions are asked for in (nearly) increasing order, so
    /// counting on from the last one keeps a long line from costing quadratic time.
    cursor_at: usize,
    cursor: Pos,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Parser<'a> {
        let base = if src.starts_with('\u{feff}') { 3 } else { 0 };
        Parser {
            src,
            at: base,
            base,
            cursor_at: base,
            cursor: Pos { line: 1, column: 1 },
        }
    }

    fn pos(&mut self, at: usize) -> Pos {
        let at = at.clamp(self.base, self.src.len());
        if at < self.cursor_at {
            self.cursor_at = self.base;
            self.cursor = Pos { line: 1, column: 1 };
        }
        for &b in &self.src.as_bytes()[self.cursor_at..at] {
            if b == b'\n' {
                self.cursor.line += 1;
                self.cursor.column = 1;
            } else if b & 0xC0 != 0x80 {
                // Not a UTF-8 continuation byte: a new character.
                self.cursor.column += 1;
            }
        }
        self.cursor_at = at;
        self.cursor
    }

    fn error(&mut self, at: usize, message: impl Into<String>) -> Error {
        Error::invalid(self.pos(at), message)
    }

    fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.at).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<u8> {
        self.src.as_bytes().get(self.at + offset).copied()
    }

    fn rest_starts_with(&self, prefix: &str) -> bool {
        self.src.as_bytes()[self.at..].starts_with(prefix.as_bytes())
    }

    fn document(mut self) -> Result<Table, Error> {
        let mut root = Table::default();
        // The header of the table that `key = value` lines go to; empty for the root.
        let mut current: Vec<KeyPart> = Vec::new();
        loop {
            self.skip_ws();
            match self.peek() {
                None => return Ok(root),
                Some(b'[') => current = self.header(&mut root)?,
                Some(b'#' | b'\n' | b'\r') => {}
                Some(_) => {
                    let (table, depth) = descend(&mut root, 0, &current, Mode::Header)?;
                    self.keyval(table, depth, Mode::Dotted)?;
                }
            }
            self.end_of_line()?;
        }
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    /// White space, comments and line breaks, as allowed inside arrays and inline tables.
    fn skip_blank(&mut self) -> Result<(), Error> {
        loop {
            self.skip_ws();
            match self.peek() {
                Some(b'#') => self.comment()?,
                Some(b'\n' | b'\r') => self.newline()?,
                _ => return Ok(()),
            }
        }
    }

    fn comment(&mut self) -> Result<(), Error> {
        self.at += 1;
        while let Some(b) = self.peek() {
            match b {
                b'\n' | b'\r' => break,
                b'\t' | 0x20..=0x7E | 0x80.. => self.at += 1,
                _ => return Err(self.error(self.at, "control character in a comment")),
            }
        }
        Ok(())
    }

    /// Consumes LF or CRLF (the caller saw `\n` or `\r`).
    fn newline(&mut self) -> Result<(), Error> {
        if self.peek() == Some(b'\r') {
            if self.peek_at(1) != Some(b'\n') {
                return Err(self.error(self.at, "carriage return not followed by a line feed"));
            }
            self.at += 1;
        }
        self.at += 1;
        Ok(())
    }

    /// After a key/value pair or a header: only a comment may follow on the line.
    fn end_of_line(&mut self) -> Result<(), Error> {
        self.skip_ws();
        if self.peek() == Some(b'#') {
            self.comment()?;
        }
        match self.peek() {
            None => Ok(()),
            Some(b'\n' | b'\r') => self.newline(),
            Some(_) => Err(self.error(
                self.at,
                "expected the end of the line (each key = value and [table] goes on its own line)",
            )),
        }
    }

    /// `[a.b]` or `[[a.b]]`; defines the table and returns its path.
    fn header(&mut self, root: &mut Table) -> Result<Vec<KeyPart>, Error> {
        self.at += 1;
        let array = self.peek() == Some(b'[');
        if array {
            self.at += 1;
        }
        self.skip_ws();
        let mut key = self.key()?;
        let close = if array { "]]" } else { "]" };
        if !self.rest_starts_with(close) {
            let message = if array {
                "expected `]]` to end the table name"
            } else {
                "expected `]` to end the table name"
            };
            return Err(self.error(self.at, message));
        }
        self.at += close.len();
        let Some(last) = key.pop() else {
            return Err(self.error(self.at, "expected a table name"));
        };
        let (parent, depth) = descend(root, 0, &key, Mode::Header)?;
        define_table(parent, depth, &last, array)?;
        key.push(last);
        Ok(key)
    }

    /// A bare, quoted or dotted key; also eats the white space after it.
    fn key(&mut self) -> Result<Vec<KeyPart>, Error> {
        let mut parts = Vec::new();
        loop {
            let pos = self.pos(self.at);
            let name = match self.peek() {
                Some(b'"') if self.rest_starts_with("\"\"\"") => {
                    return Err(self.error(self.at, "a key cannot be a multi-line string"));
                }
                Some(b'\'') if self.rest_starts_with("'''") => {
                    return Err(self.error(self.at, "a key cannot be a multi-line string"));
                }
                Some(b'"') => self.basic_string()?,
                Some(b'\'') => self.literal_string()?,
                _ => self.bare_key()?,
            };
            parts.push(KeyPart { name, pos });
            if parts.len() > MAX_DEPTH {
                return Err(Error::unsupported(pos, "the key has too many parts"));
            }
            self.skip_ws();
            if self.peek() != Some(b'.') {
                return Ok(parts);
            }
            self.at += 1;
            self.skip_ws();
        }
    }

    fn bare_key(&mut self) -> Result<String, Error> {
        let start = self.at;
        while matches!(
            self.peek(),
            Some(b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-')
        ) {
            self.at += 1;
        }
        if self.at == start {
            return Err(self.error(
                start,
                "expected a key (letters, digits, `_` and `-`, or a quoted string)",
            ));
        }
        Ok(self.src[start..self.at].to_string())
    }

    /// `key = value` into `table` (at `depth`), which is the current header's table or an inline
    /// table being read.
    fn keyval(&mut self, table: &mut Table, depth: usize, mode: Mode) -> Result<(), Error> {
        let mut key = self.key()?;
        let inline = mode == Mode::Inline;
        if inline {
            // The `toml` crate allows line breaks around `=` inside `{ }`; so do we.
            self.skip_blank()?;
        }
        if self.peek() != Some(b'=') {
            return Err(self.error(self.at, "expected `=` after the key"));
        }
        self.at += 1;
        if inline {
            self.skip_blank()?;
        } else {
            self.skip_ws();
        }
        let Some(last) = key.pop() else {
            return Err(self.error(self.at, "expected a key"));
        };
        let (parent, parent_depth) = descend(table, depth, &key, mode)?;
        // A dotted key that reached an explicitly defined table (an `[[array]]` element).
        if !key.is_empty() && !parent.implicit {
            return Err(defined_twice(&last));
        }
        let node = self.value(parent_depth + 1)?;
        if parent.entries.contains_key(&last.name) {
            return Err(defined_twice(&last));
        }
        parent.entries.insert(
            last.name,
            Entry {
                key_pos: last.pos,
                node,
            },
        );
        Ok(())
    }

    fn value(&mut self, depth: usize) -> Result<Node, Error> {
        let start = self.at;
        let pos = self.pos(start);
        if depth > MAX_DEPTH {
            return Err(Error::unsupported(
                pos,
                format!("values nested more than {MAX_DEPTH} levels deep"),
            ));
        }
        let value = match self.peek() {
            Some(b'"') if self.rest_starts_with("\"\"\"") => {
                Value::String(self.multiline_basic_string()?)
            }
            Some(b'\'') if self.rest_starts_with("'''") => {
                Value::String(self.multiline_literal_string()?)
            }
            Some(b'"') => Value::String(self.basic_string()?),
            Some(b'\'') => Value::String(self.literal_string()?),
            Some(b'[') => Value::Array(self.array(depth)?),
            Some(b'{') => Value::Table(self.inline_table(depth)?),
            _ => self.scalar()?,
        };
        Ok(Node { value, pos })
    }

    fn array(&mut self, depth: usize) -> Result<Array, Error> {
        let open = self.at;
        self.at += 1;
        let mut items = Vec::new();
        loop {
            self.skip_blank()?;
            if self.peek() == Some(b']') {
                self.at += 1;
                return Ok(Array {
                    items,
                    of_tables: false,
                });
            }
            items.push(self.value(depth + 1)?);
            self.skip_blank()?;
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {}
                None => return Err(self.error(open, "the array is not closed with `]`")),
                Some(_) => {
                    return Err(self.error(self.at, "expected `,` or `]` after an array item"));
                }
            }
        }
    }

    fn inline_table(&mut self, depth: usize) -> Result<Table, Error> {
        let open = self.at;
        self.at += 1;
        let mut table = Table {
            inline: true,
            ..Table::default()
        };
        self.skip_blank()?;
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(table);
        }
        loop {
            self.keyval(&mut table, depth, Mode::Inline)?;
            self.skip_blank()?;
            match self.peek() {
                Some(b',') => {
                    self.at += 1;
                    self.skip_blank()?;
                    if self.peek() == Some(b'}') {
                        self.at += 1;
                        return Ok(table);
                    }
                }
                Some(b'}') => {
                    self.at += 1;
                    return Ok(table);
                }
                None => return Err(self.error(open, "the inline table is not closed with `}`")),
                Some(_) => {
                    return Err(self.error(self.at, "expected `,` or `}` in an inline table"));
                }
            }
        }
    }

    /// An unquoted value: an integer or a boolean. Floats and date-times are recognised only to
    /// say that they are not supported.
    fn scalar(&mut self) -> Result<Value, Error> {
        let start = self.at;
        while matches!(
            self.peek(),
            Some(b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'+' | b'-' | b'.' | b':')
        ) {
            self.at += 1;
        }
        let atom = &self.src[start..self.at];
        match atom {
            "" => Err(self.error(start, "expected a value (strings need quotes)")),
            "true" => Ok(Value::Boolean(true)),
            "false" => Ok(Value::Boolean(false)),
            _ => match integer(atom) {
                Ok(n) => Ok(Value::Integer(n)),
                Err(IntError::Overflow) => Err(self.error(
                    start,
                    "integer out of range (TOML integers are 64-bit signed)",
                )),
                Err(IntError::Syntax) if is_date_time(atom) => Err(Error::unsupported(
                    self.pos(start),
                    "date-times are not supported here (no setting uses them)",
                )),
                Err(IntError::Syntax) if is_float(atom) => Err(Error::unsupported(
                    self.pos(start),
                    "floats are not supported here (no setting uses them)",
                )),
                Err(IntError::Syntax) => Err(self.error(
                    start,
                    "invalid value (strings need quotes; numbers are whole, like 30 or 0x1f)",
                )),
            },
        }
    }

    /// `"..."`: escapes, no control characters, one line.
    fn basic_string(&mut self) -> Result<String, Error> {
        let open = self.at;
        self.at += 1;
        let mut out = String::new();
        loop {
            self.copy_run(&mut out, b'"');
            match self.peek() {
                None => return Err(self.error(open, "the string is not closed with `\"`")),
                Some(b'"') => {
                    self.at += 1;
                    return Ok(out);
                }
                Some(b'\\') => self.escape(&mut out)?,
                Some(b'\n' | b'\r') => {
                    return Err(self.error(
                        self.at,
                        "the string is not closed on its line (use \"\"\" for several lines)",
                    ));
                }
                Some(_) => return Err(self.control_in_string()),
            }
        }
    }

    /// `'...'`: taken as written, one line.
    fn literal_string(&mut self) -> Result<String, Error> {
        let open = self.at;
        self.at += 1;
        let mut out = String::new();
        self.copy_run(&mut out, b'\'');
        match self.peek() {
            Some(b'\'') => {
                self.at += 1;
                Ok(out)
            }
            None => Err(self.error(open, "the string is not closed with `'`")),
            Some(b'\n' | b'\r') => Err(self.error(
                self.at,
                "the string is not closed on its line (use ''' for several lines)",
            )),
            Some(_) => Err(self.control_in_string()),
        }
    }

    /// `"""..."""`: escapes, line breaks kept, a backslash at the end of a line joins lines.
    fn multiline_basic_string(&mut self) -> Result<String, Error> {
        let open = self.at;
        self.at += 3;
        self.skip_first_newline();
        let mut out = String::new();
        loop {
            self.copy_run(&mut out, b'"');
            match self.peek() {
                None => return Err(self.error(open, "the string is not closed with `\"\"\"`")),
                Some(b'"') => {
                    if self.closing_quotes(&mut out, b'"') {
                        return Ok(out);
                    }
                }
                Some(b'\\') if matches!(self.peek_at(1), Some(b' ' | b'\t' | b'\n' | b'\r')) => {
                    self.line_ending_backslash()?;
                }
                Some(b'\\') => self.escape(&mut out)?,
                Some(b'\n' | b'\r') => self.copy_newline(&mut out)?,
                Some(_) => return Err(self.control_in_string()),
            }
        }
    }

    /// `'''...'''`: taken as written, line breaks kept.
    fn multiline_literal_string(&mut self) -> Result<String, Error> {
        let open = self.at;
        self.at += 3;
        self.skip_first_newline();
        let mut out = String::new();
        loop {
            self.copy_run(&mut out, b'\'');
            match self.peek() {
                None => return Err(self.error(open, "the string is not closed with `'''`")),
                Some(b'\'') => {
                    if self.closing_quotes(&mut out, b'\'') {
                        return Ok(out);
                    }
                }
                Some(b'\n' | b'\r') => self.copy_newline(&mut out)?,
                Some(_) => return Err(self.control_in_string()),
            }
        }
    }

    /// Copies characters up to the next `quote`, backslash (in basic strings only) or control
    /// character. Stops only at ASCII bytes, so the slice is on character boundaries.
    fn copy_run(&mut self, out: &mut String, quote: u8) {
        let start = self.at;
        while let Some(b) = self.peek() {
            let special = b == quote || (quote == b'"' && b == b'\\') || is_control(b);
            if special {
                break;
            }
            self.at += 1;
        }
        out.push_str(&self.src[start..self.at]);
    }

    /// At a run of quotes in a multi-line string. Fewer than three are content; three end the
    /// string, and up to two more before them are content (`""""` is one quote, then the end).
    fn closing_quotes(&mut self, out: &mut String, quote: u8) -> bool {
        let mut run = 0;
        while self.peek_at(run) == Some(quote) {
            run += 1;
        }
        let taken = run.min(5);
        let content = if run >= 3 { taken - 3 } else { run };
        for _ in 0..content {
            out.push(char::from(quote));
        }
        self.at += if run >= 3 { taken } else { run };
        run >= 3
    }

    fn skip_first_newline(&mut self) {
        if self.peek() == Some(b'\n') {
            self.at += 1;
        } else if self.rest_starts_with("\r\n") {
            self.at += 2;
        }
    }

    fn copy_newline(&mut self, out: &mut String) -> Result<(), Error> {
        let start = self.at;
        self.newline()?;
        out.push_str(&self.src[start..self.at]);
        Ok(())
    }

    /// `\` then white space to the end of the line: the line break and the white space (and
    /// blank lines) that follow are dropped.
    fn line_ending_backslash(&mut self) -> Result<(), Error> {
        let at = self.at;
        self.at += 1;
        self.skip_ws();
        if !matches!(self.peek(), Some(b'\n' | b'\r')) {
            return Err(self.error(
                at,
                "a backslash followed by spaces must end the line in a multi-line string",
            ));
        }
        loop {
            self.skip_ws();
            match self.peek() {
                Some(b'\n' | b'\r') => self.newline()?,
                _ => return Ok(()),
            }
        }
    }

    fn control_in_string(&mut self) -> Error {
        self.error(
            self.at,
            "control character in a string (write it as an escape, like \\t or \\u0007)",
        )
    }

    fn escape(&mut self, out: &mut String) -> Result<(), Error> {
        let at = self.at;
        let c = match self.peek_at(1) {
            Some(b'b') => '\u{8}',
            Some(b't') => '\t',
            Some(b'n') => '\n',
            Some(b'f') => '\u{c}',
            Some(b'r') => '\r',
            Some(b'e') => '\u{1b}',
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'x') => return self.hex_escape(out, 2),
            Some(b'u') => return self.hex_escape(out, 4),
            Some(b'U') => return self.hex_escape(out, 8),
            _ => {
                return Err(self.error(
                    at,
                    "invalid escape (use \\b \\t \\n \\f \\r \\e \\\" \\\\ \\xHH \\uHHHH or \\UHHHHHHHH)",
                ));
            }
        };
        self.at += 2;
        out.push(c);
        Ok(())
    }

    /// `\xHH`, `\uHHHH`, `\UHHHHHHHH`: exactly `digits` hex digits naming a Unicode scalar value.
    fn hex_escape(&mut self, out: &mut String, digits: usize) -> Result<(), Error> {
        let at = self.at;
        let hex = self
            .src
            .as_bytes()
            .get(at + 2..at + 2 + digits)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit));
        let Some(hex) = hex else {
            return Err(self.error(at, format!("the escape needs {digits} hex digits")));
        };
        let code = hex.iter().fold(0u32, |n, &h| {
            n * 16 + char::from(h).to_digit(16).unwrap_or(0)
        });
        let Some(c) = char::from_u32(code) else {
            return Err(self.error(at, "the escape is not a Unicode character"));
        };
        out.push(c);
        self.at += 2 + digits;
        Ok(())
    }
}

/// Control characters other than tab may not appear raw in strings or comments.
fn is_control(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7F
}

fn defined_twice(key: &KeyPart) -> Error {
    Error::invalid(key.pos, format!("{} is defined twice", show_key(&key.name)))
}

/// A key for a message: in backquotes, escaped (a quoted key may hold control characters), and
/// cut short.
fn show_key(key: &str) -> String {
    let mut shown: String = key.chars().take(64).flat_map(char::escape_debug).collect();
    if key.chars().nth(64).is_some() {
        shown.push('…');
    }
    format!("`{shown}`")
}

/// Follows `path` from `table` (at `depth`), creating missing tables, and returns the table at
/// its end with its depth. What may be passed through depends on `mode`; these are TOML's rules
/// as the `toml` crate applies them.
fn descend<'t>(
    mut table: &'t mut Table,
    mut depth: usize,
    path: &[KeyPart],
    mode: Mode,
) -> Result<(&'t mut Table, usize), Error> {
    for part in path {
        depth += 1;
        if depth > MAX_DEPTH {
            return Err(too_deep(part));
        }
        // Looked up before inserting, so that following an existing path allocates nothing.
        if !table.entries.contains_key(&part.name) {
            let implicit = Table {
                entries: BTreeMap::new(),
                implicit: true,
                dotted: mode != Mode::Header,
                inline: mode == Mode::Inline,
            };
            let node = Node {
                pos: part.pos,
                value: Value::Table(implicit),
            };
            let entry = Entry {
                key_pos: part.pos,
                node,
            };
            table.entries.insert(part.name.clone(), entry);
        }
        let Some(entry) = table.entries.get_mut(&part.name) else {
            return Err(not_a_table(part));
        };
        table = match &mut entry.node.value {
            Value::Table(t) => {
                if t.inline && mode != Mode::Inline {
                    return Err(Error::invalid(
                        part.pos,
                        format!(
                            "{} is an inline table {{ ... }}, which cannot be extended",
                            show_key(&part.name)
                        ),
                    ));
                }
                if mode != Mode::Header {
                    if !t.implicit {
                        return Err(defined_twice(part));
                    }
                    t.dotted = true;
                }
                t
            }
            // `[[a]]` then `[a.b]`: b goes into the last table of a.
            Value::Array(a) if a.of_tables => {
                depth += 1;
                match a.items.last_mut() {
                    Some(Node {
                        value: Value::Table(t),
                        ..
                    }) => t,
                    _ => return Err(not_a_table(part)),
                }
            }
            _ => return Err(not_a_table(part)),
        };
    }
    Ok((table, depth))
}

fn not_a_table(part: &KeyPart) -> Error {
    Error::invalid(
        part.pos,
        format!(
            "{} already has a value that is not a table",
            show_key(&part.name)
        ),
    )
}

fn too_deep(part: &KeyPart) -> Error {
    Error::unsupported(
        part.pos,
        format!("tables nested more than {MAX_DEPTH} levels deep"),
    )
}

/// The last part of a header: `[key]` defines a table (once), `[[key]]` adds one to an array.
fn define_table(parent: &mut Table, depth: usize, key: &KeyPart, array: bool) -> Result<(), Error> {
    if depth + if array { 2 } else { 1 } > MAX_DEPTH {
        return Err(too_deep(key));
    }
    let table = Node {
        pos: key.pos,
        value: Value::Table(Table::default()),
    };
    match parent.entries.get_mut(&key.name) {
        None => {
            let value = if array {
                Value::Array(Array {
                    items: vec![table],
                    of_tables: true,
                })
            } else {
                table.value
            };
            let node = Node {
                pos: key.pos,
                value,
            };
            parent.entries.insert(
                key.name.clone(),
                Entry {
                    key_pos: key.pos,
                    node,
                },
            );
            Ok(())
        }
        Some(entry) => match &mut entry.node.value {
            Value::Array(a) if array && a.of_tables => {
                a.items.push(table);
                Ok(())
            }
            // Created as the parent of an earlier header: this header defines it.
            Value::Table(t) if !array && t.implicit && !t.dotted => {
                t.implicit = false;
                Ok(())
            }
            _ => Err(defined_twice(key)),
        },
    }
}

enum IntError {
    Syntax,
    Overflow,
}

/// A TOML integer: decimal with an optional sign and no leading zero, or `0x`, `0o`, `0b`
/// without a sign; `_` only between digits.
fn integer(atom: &str) -> Result<i64, IntError> {
    let (radix, negative, digits) = if let Some(d) = atom.strip_prefix("0x") {
        (16, false, d)
    } else if let Some(d) = atom.strip_prefix("0o") {
        (8, false, d)
    } else if let Some(d) = atom.strip_prefix("0b") {
        (2, false, d)
    } else if let Some(d) = atom.strip_prefix('-') {
        (10, true, d)
    } else {
        (10, false, atom.strip_prefix('+').unwrap_or(atom))
    };
    let bytes = digits.as_bytes();
    let is_digit = |b: u8| char::from(b).is_digit(radix);
    let well_formed = !bytes.is_empty()
        && bytes.iter().enumerate().all(|(i, &b)| {
            is_digit(b)
                || (b == b'_'
                    && i > 0
                    && is_digit(bytes[i - 1])
                    && bytes.get(i + 1).is_some_and(|&n| is_digit(n)))
        });
    let leading_zero = radix == 10 && bytes.len() > 1 && bytes[0] == b'0';
    if !well_formed || leading_zero {
        return Err(IntError::Syntax);
    }
    let mut n: i64 = 0;
    for &b in bytes.iter().filter(|&&b| b != b'_') {
        let d = i64::from(char::from(b).to_digit(radix).unwrap_or(0));
        // Negative numbers are built downwards, so i64::MIN fits.
        n = n
            .checked_mul(i64::from(radix))
            .and_then(|n| {
                if negative {
                    n.checked_sub(d)
                } else {
                    n.checked_add(d)
                }
            })
            .ok_or(IntError::Overflow)?;
    }
    Ok(n)
}

/// `1979-05-27...` or `07:32:00...`.
fn is_date_time(atom: &str) -> bool {
    let b = atom.as_bytes();
    let digits = |n: usize| b.len() > n && b[..n].iter().all(u8::is_ascii_digit);
    (digits(4) && b[4] == b'-') || (digits(2) && b[2] == b':')
}

/// `1.5`, `-2e10`, `inf`, `+nan` and the like.
fn is_float(atom: &str) -> bool {
    let unsigned = atom.strip_prefix(['+', '-']).unwrap_or(atom);
    matches!(unsigned, "inf" | "nan")
        || (unsigned.starts_with(|c: char| c.is_ascii_digit())
            && !unsigned.starts_with("0x")
            && unsigned.contains(['.', 'e', 'E']))
}

/// One table being read into a struct. Fields are taken out by name, and whatever is left at
/// the end is an unknown key: twostep refuses those, so that a mistyped setting cannot quietly
/// fall back to a default.
#[derive(Debug)]
pub struct Fields {
    entries: BTreeMap<String, Entry>,
    /// Dotted name of this table for messages; empty for the document.
    path: String,
    pos: Pos,
}

impl Fields {
    /// The fields of a whole document.
    pub fn new(document: Table) -> Fields {
        Fields {
            entries: document.entries,
            path: String::new(),
            pos: Pos::default(),
        }
    }

    /// Parses `text` and returns its top-level fields.
    pub fn parse(text: &str) -> Result<Fields, Error> {
        parse(text).map(Fields::new)
    }

    fn take(&mut self, key: &str) -> Option<Node> {
        self.entries.remove(key).map(|e| e.node)
    }

    fn name(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn wrong(&self, key: &str, pos: Pos, expected: &str) -> Error {
        Error::invalid(pos, format!("`{}` must be {expected}", self.name(key)))
    }

    /// The error for a required key that is absent.
    pub fn missing(&self, key: &str) -> Error {
        Error::invalid(self.pos, format!("`{}` is missing", self.name(key)))
    }

    pub fn string(&mut self, key: &str) -> Result<Option<String>, Error> {
        let Some(node) = self.take(key) else {
            return Ok(None);
        };
        match node.value {
            Value::String(s) => Ok(Some(s)),
            _ => Err(self.wrong(key, node.pos, "a string")),
        }
    }

    pub fn boolean(&mut self, key: &str) -> Result<Option<bool>, Error> {
        let Some(node) = self.take(key) else {
            return Ok(None);
        };
        match node.value {
            Value::Boolean(b) => Ok(Some(b)),
            _ => Err(self.wrong(key, node.pos, "true or false")),
        }
    }

    pub fn u64(&mut self, key: &str) -> Result<Option<u64>, Error> {
        self.integer(key, "a whole number from 0 to 9223372036854775807")
    }

    pub fn u32(&mut self, key: &str) -> Result<Option<u32>, Error> {
        self.integer(key, "a whole number from 0 to 4294967295")
    }

    pub fn u16(&mut self, key: &str) -> Result<Option<u16>, Error> {
        self.integer(key, "a whole number from 0 to 65535")
    }

    pub fn u8(&mut self, key: &str) -> Result<Option<u8>, Error> {
        self.integer(key, "a whole number from 0 to 255")
    }

    fn integer<T: TryFrom<i64>>(&mut self, key: &str, expected: &str) -> Result<Option<T>, Error> {
        let Some(node) = self.take(key) else {
            return Ok(None);
        };
        match node.value {
            Value::Integer(n) => T::try_from(n)
                .map(Some)
                .map_err(|_| self.wrong(key, node.pos, expected)),
            _ => Err(self.wrong(key, node.pos, expected)),
        }
    }

    /// A string that must be one of `choices` (by exact name).
    pub fn choice<T: Copy>(
        &mut self,
        key: &str,
        choices: &[(&str, T)],
    ) -> Result<Option<T>, Error> {
        let Some(node) = self.take(key) else {
            return Ok(None);
        };
        let found = match &node.value {
            Value::String(s) => choices.iter().find(|(name, _)| *name == s.as_str()),
            _ => None,
        };
        if let Some((_, value)) = found {
            return Ok(Some(*value));
        }
        let names: Vec<String> = choices.iter().map(|(n, _)| format!("\"{n}\"")).collect();
        Err(self.wrong(key, node.pos, &format!("one of {}", names.join(", "))))
    }

    pub fn strings(&mut self, key: &str) -> Result<Option<Vec<String>>, Error> {
        self.list(key, |s| Ok::<_, std::convert::Infallible>(s.to_string()))
    }

    /// An array of strings, each turned into a `T` by `convert`; its errors are reported at the
    /// item (they come from twostep's own parsers, such as networks, not from a secret).
    pub fn list<T, E: fmt::Display>(
        &mut self,
        key: &str,
        convert: impl Fn(&str) -> Result<T, E>,
    ) -> Result<Option<Vec<T>>, Error> {
        let Some(items) = self.array(key, "an array of strings")? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let Value::String(s) = &item.value else {
                return Err(self.wrong(key, item.pos, "an array of strings"));
            };
            let value = convert(s)
                .map_err(|why| Error::invalid(item.pos, format!("`{}`: {why}", self.name(key))))?;
            out.push(value);
        }
        Ok(Some(out))
    }

    pub fn u64s(&mut self, key: &str) -> Result<Option<Vec<u64>>, Error> {
        const EXPECTED: &str = "an array of whole numbers from 0 to 9223372036854775807";
        let Some(items) = self.array(key, EXPECTED)? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match item.value {
                Value::Integer(n) if n >= 0 => out.push(n.unsigned_abs()),
                _ => return Err(self.wrong(key, item.pos, EXPECTED)),
            }
        }
        Ok(Some(out))
    }

    fn array(&mut self, key: &str, expected: &str) -> Result<Option<Vec<Node>>, Error> {
        let Some(node) = self.take(key) else {
            return Ok(None);
        };
        match node.value {
            Value::Array(a) => Ok(Some(a.items)),
            _ => Err(self.wrong(key, node.pos, expected)),
        }
    }

    /// A sub-table, `[key]` or `key = { ... }`.
    pub fn table(&mut self, key: &str) -> Result<Option<Fields>, Error> {
        let Some(node) = self.take(key) else {
            return Ok(None);
        };
        match node.value {
            Value::Table(t) => Ok(Some(Fields {
                entries: t.entries,
                path: self.name(key),
                pos: node.pos,
            })),
            _ => Err(self.wrong(key, node.pos, "a table")),
        }
    }

    /// An array of tables, `[[key]]` or `key = [{ ... }, ...]`.
    pub fn tables(&mut self, key: &str) -> Result<Option<Vec<Fields>>, Error> {
        let Some(items) = self.array(key, "an array of tables")? else {
            return Ok(None);
        };
        let path = self.name(key);
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let Value::Table(t) = item.value else {
                return Err(self.wrong(key, item.pos, "an array of tables"));
            };
            out.push(Fields {
                entries: t.entries,
                path: path.clone(),
                pos: item.pos,
            });
        }
        Ok(Some(out))
    }

    /// Ends reading: a key nobody took is an error, reported at the first such key.
    pub fn finish(self) -> Result<(), Error> {
        let unknown = self.entries.iter().min_by_key(|(_, e)| e.key_pos);
        match unknown {
            None => Ok(()),
            Some((key, entry)) => {
                let name = if self.path.is_empty() {
                    show_key(key)
                } else {
                    show_key(&format!("{}.{key}", self.path))
                };
                Err(Error::invalid(entry.key_pos, format!("unknown key {name}")))
            }
        }
    }
}

/// Writes TOML in the layout of the first record writer (`toml::to_string_pretty`): `key = value`
/// lines, a blank line before each header, arrays of two or more items one item per line.
/// Strings are always basic strings.
#[derive(Debug)]
pub struct Writer<'a> {
    out: &'a mut String,
    too_large: bool,
}

impl<'a> Writer<'a> {
    /// Appends to `out` (the caller chooses its capacity; records hold a key).
    pub fn new(out: &'a mut String) -> Writer<'a> {
        Writer {
            out,
            too_large: false,
        }
    }

    pub fn string(&mut self, key: &str, value: &str) {
        self.key(key);
        write_string(self.out, value);
        self.out.push('\n');
    }

    pub fn u64(&mut self, key: &str, value: u64) {
        self.key(key);
        self.integer(value);
        self.out.push('\n');
    }

    pub fn boolean(&mut self, key: &str, value: bool) {
        self.key(key);
        self.out.push_str(if value { "true" } else { "false" });
        self.out.push('\n');
    }

    pub fn strings(&mut self, key: &str, values: &[String]) {
        self.key(key);
        self.open_array(values.len());
        for value in values {
            self.item_start(values.len());
            write_string(self.out, value);
            self.item_end(values.len());
        }
        self.out.push_str("]\n");
    }

    pub fn u64s(&mut self, key: &str, values: &[u64]) {
        self.key(key);
        self.open_array(values.len());
        for &value in values {
            self.item_start(values.len());
            self.integer(value);
            self.item_end(values.len());
        }
        self.out.push_str("]\n");
    }

    /// `[a.b]`: what follows goes into that table.
    pub fn table(&mut self, path: &[&str]) {
        self.header(path, "[", "]");
    }

    /// `[[a.b]]`: what follows goes into a new table at the end of that array.
    pub fn array_table(&mut self, path: &[&str]) {
        self.header(path, "[[", "]]");
    }

    /// Ends writing; fails if a number could not be written (TOML integers are signed 64-bit).
    pub fn finish(self) -> Result<(), TooLarge> {
        if self.too_large {
            return Err(TooLarge);
        }
        Ok(())
    }

    fn header(&mut self, path: &[&str], open: &str, close: &str) {
        self.out.push('\n');
        self.out.push_str(open);
        for (i, part) in path.iter().enumerate() {
            if i > 0 {
                self.out.push('.');
            }
            write_key(self.out, part);
        }
        self.out.push_str(close);
        self.out.push('\n');
    }

    fn key(&mut self, key: &str) {
        write_key(self.out, key);
        self.out.push_str(" = ");
    }

    fn integer(&mut self, value: u64) {
        if i64::try_from(value).is_err() {
            self.too_large = true;
        }
        self.out.push_str(&value.to_string());
    }

    fn open_array(&mut self, len: usize) {
        self.out.push('[');
        if len > 1 {
            self.out.push('\n');
        }
    }

    fn item_start(&mut self, len: usize) {
        if len > 1 {
            self.out.push_str("    ");
        }
    }

    fn item_end(&mut self, len: usize) {
        if len > 1 {
            self.out.push_str(",\n");
        }
    }
}

fn write_key(out: &mut String, key: &str) {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        out.push_str(key);
    } else {
        write_string(out, key);
    }
}

/// A basic string: `"` and `\` escaped, control characters as escapes, the rest as is.
fn write_string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c.is_ascii_control() => {
                out.push_str(&format!("\\u{:04X}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests;
