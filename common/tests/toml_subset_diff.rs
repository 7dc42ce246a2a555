//! The codec against the `toml` crate (a dev-dependency, the parser twostep used before).
//!
//! For hand-written and generated documents: what `toml` accepts, we accept with the same
//! values, unless it holds a float or a date-time or nests deeper than we allow (refused on
//! purpose, as "unsupported"); what we accept, `toml` accepts. And whatever our writer emits,
//! `toml` reads back to the values written.

use twostep_common::toml_subset::{self, ErrorKind, Writer};

use twostep_testkit::toml_compare::{to_toml_table, unsupported};

#[derive(Debug, Default)]
struct Tally {
    both_accept: usize,
    both_refuse: usize,
    unsupported: usize,
}

fn compare(doc: &str, tally: &mut Tally) {
    let ours = toml_subset::parse(doc);
    let theirs = toml::from_str::<toml::Table>(doc);
    match (ours, theirs) {
        (Ok(ours), Ok(theirs)) => {
            assert_eq!(to_toml_table(&ours), theirs, "different values for {doc:?}");
            tally.both_accept += 1;
        }
        (Ok(ours), Err(e)) => panic!(
            "we accept what toml refuses ({}): {doc:?} => {ours:?}",
            e.message()
        ),
        (Err(e), Ok(theirs)) => {
            assert!(
                e.kind == ErrorKind::Unsupported && unsupported(&theirs, 0),
                "we refuse ({e}) what toml accepts: {doc:?} => {theirs:?}"
            );
            tally.unsupported += 1;
        }
        (Err(_), Err(_)) => tally.both_refuse += 1,
    }
}

/// Documents written to hit TOML's corners (and the ones this codec refuses).
const CORPUS: &[&str] = &[
    "",
    "\n\r\n# c\n",
    "\u{feff}a = 1",
    "a = 1\r",
    "a = 1 #\u{7f}",
    "a = 1 #\u{1}",
    "a = 1 # \u{e9}\u{1f600}\t",
    "a=1\nb=2",
    "a = 1 b = 2",
    "a.b.c = 1\na.b.d = 2\n[a.e]",
    "a.b.c = 1\n[a.b]",
    "[a.b.c]\n[a]\nb.d = 1",
    "[a.b.c]\n[a]\nb.d = 1\n[a.b]",
    "[a.b.c]\n[a]\nb.c.x = 1",
    "[a.b.c]\n[a]\nb.c.x.y = 1",
    "[a.b]\n[a]\nb.x.y = 1",
    "a = { b = {}, b.c.d = 1 }",
    "a = { b = { c = {} }, b.c.d = 1 }",
    "a = { b.c = 1, b.d.e = 2 }",
    "[a]\nb.c = 1\n[a.b.d]",
    "[[t.a]]\n[t]\na.x.y = 1",
    "[[t.a]]\n[t]\na.x = 1",
    "[[a]]\n[a]",
    "[a]\n[[a]]",
    "[[a.b]]\n[a]",
    "[a.b]\n[[a]]",
    "[[a]]\nb = 1\n[[a]]\n[a.c]\nd = 1\n[[a.c.e]]",
    "a = []\n[[a]]",
    "a = [{b = 1}]\n[a.c]",
    "a = {b = 1}\n[a]",
    "a = {b = 1}\n[a.c]",
    "a = {b = 1}\na.c = 2",
    "a = {b.c = 1, b.d = 2}",
    "a = {b.c = 1, b = 2}",
    "a = {b = {}, b.c = 1}",
    "a = {\n b = 1, # c\n c\n =\n 2,\n}",
    "a = { b\n.c = 1 }",
    "a = {,}",
    "a = { b = 1,, }",
    "a = [,]",
    "a = [1,,]",
    "a = [ # c\n 1 # d\n , # e\n ]",
    "a = [1\n,2]",
    "a = [[[[1]]], {b = [{c = []}]}]",
    "\"\" = 1\n'' = 2",
    "\"a\".'b'.\"c\\td\" = 1",
    "\"\"\"a\"\"\" = 1",
    "'''a''' = 1",
    "\u{e9} = 1",
    "1.2 = 3",
    "true = false",
    "inf = 1\nnan = 2",
    "a = \"\\b\\t\\n\\f\\r\\e\\\"\\\\\\x41\\u00e9\\U0001F600\"",
    "a = \"\\a\"",
    "a = \"\\x4\"",
    "a = \"\\ud800\"",
    "a = \"\\uDFFF\\uE000\"",
    "a = \"\\U0010FFFF\"",
    "a = \"\\U00110000\"",
    "a = \"\u{7f}\"",
    "a = '\u{7f}'",
    "a = \"a\r\nb\"",
    "a = \"\"\"\r\na\r\nb\"\"\"",
    "a = \"\"\"a\rb\"\"\"",
    "a = \"\"\"\\\r\n  x\"\"\"",
    "a = \"\"\"\\ \r \nx\"\"\"",
    "a = \"\"\"\\  x\"\"\"",
    "a = \"\"\"\\\n\n \n  x\"\"\"",
    "a = \"\"\"\"\"\"",
    "a = \"\"\"\"\"\"\"",
    "a = \"\"\"\"\"\"\"\"",
    "a = \"\"\"\"\"\"\"\"\"",
    "a = \"\"\"\\\"\"\"\"",
    "a = ''''''",
    "a = '''''''",
    "a = ''''''''",
    "a = '''''''''",
    "a = '''\n'''",
    "a = '''\r\nx'''",
    "a = '''x\ry'''",
    "a = 0\nb = -0\nc = +0\nd = 1_000\ne = 0xdead_BEEF\nf = 0o17\ng = 0b1_0",
    "a = 00",
    "a = 0_1",
    "a = 01",
    "a = 1__2",
    "a = 1_",
    "a = _1",
    "a = 0x_1",
    "a = 0X1",
    "a = +0x1",
    "a = -0o1",
    "a = 0b2",
    "a = 0o8",
    "a = 0x",
    "a = 9223372036854775807\nb = -9223372036854775808",
    "a = 9223372036854775808",
    "a = -9223372036854775809",
    "a = 0x8000000000000000",
    "a = 0o1777777777777777777777",
    "a = 1.0",
    "a = 1e5",
    "a = -inf",
    "a = nan",
    "a = 1979-05-27",
    "a = 1979-05-27T07:32:00Z",
    "a = 1979-05-27 07:32:00",
    "a = 07:32",
    "a = [1, 2.0]",
    "a = { b = 1979-01-01 }",
    "a = 1979-05-27 x",
    "a = True",
    "a = trueish",
    "a = \"x\"y",
    "a = [1]x",
    "a = {b=1}}",
    "a = ",
    "a",
    "= 1",
    "[a\n]",
    "[\na]",
    "[ a . b ]\n[[ c ]]",
    "[[a] ]",
    "[ [a]]",
    "[]",
    "[a] b = 1",
    "[a]#c",
    "[[a]]#c\n",
];

#[test]
fn hand_written_documents_agree_with_the_toml_crate() {
    let mut tally = Tally::default();
    for doc in CORPUS {
        compare(doc, &mut tally);
    }
    assert!(tally.both_accept > 30, "{tally:?}");
    assert!(tally.both_refuse > 30, "{tally:?}");
    assert!(tally.unsupported >= 8, "{tally:?}");
}

/// SplitMix64: deterministic, good enough to pick from lists.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Random TOML-ish documents: mostly well-formed, with key collisions, odd strings, all the
/// integer spellings, some floats and dates, and a few corrupted bytes.
struct Generator {
    rng: Rng,
}

const KEYS: &[&str] = &[
    "a", "b", "c", "hosts", "lockout", "x-y", "_", "1", "0x1", "true",
];
const QUOTED_KEYS: &[&str] = &[
    "\"a\"",
    "'b'",
    "\"\"",
    "\"é k\"",
    "\"\\u0061\"",
    "'a.b'",
    "\"\\n\"",
];
const STRING_CHARS: &[&str] = &[
    "a",
    "Z",
    " ",
    "\t",
    "é",
    "😀",
    "\u{ffff}",
    "\u{10ffff}",
    "\u{e000}",
    "'",
    "\"",
    "\\",
    "#",
    "=",
    "[",
    "]",
    "{",
    "}",
    ",",
    ".",
];
const ESCAPES: &[&str] = &[
    "\\n",
    "\\t",
    "\\\"",
    "\\\\",
    "\\b",
    "\\f",
    "\\r",
    "\\e",
    "\\x41",
    "\\xff",
    "\\u00e9",
    "\\U0001F600",
    "\\ud800",
    "\\q",
    "\\x4",
    "\\u12",
];
const INTEGERS: &[&str] = &[
    "0",
    "-0",
    "+0",
    "7",
    "-7",
    "+7",
    "1_000",
    "1__0",
    "01",
    "0x1F",
    "0xdead_beef",
    "0o755",
    "0b1010",
    "0X1",
    "-0x1",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "0x7fffffffffffffff",
    "0xffffffffffffffff",
    "1_",
    "_1",
    "0b",
    "00",
];
const OTHER_ATOMS: &[&str] = &[
    "true",
    "false",
    "True",
    "1.5",
    "-0.0",
    "1e3",
    "inf",
    "-nan",
    "1979-05-27",
    "07:32:00",
    "1979-05-27T07:32:00Z",
    "bare",
    "",
];

impl Generator {
    fn key_part(&mut self) -> String {
        // A few names most of the time, so that keys collide and paths cross.
        if self.rng.chance(60) {
            self.rng.pick(&["a", "b", "c"]).to_string()
        } else if self.rng.chance(20) {
            self.rng.pick(QUOTED_KEYS).to_string()
        } else {
            self.rng.pick(KEYS).to_string()
        }
    }

    fn key(&mut self) -> String {
        let parts = 1 + self.rng.below(4) * usize::from(self.rng.chance(40));
        let sep = if self.rng.chance(10) { " . " } else { "." };
        (0..parts)
            .map(|_| self.key_part())
            .collect::<Vec<_>>()
            .join(sep)
    }

    fn string_body(&mut self, escapes: bool, newlines: bool) -> String {
        let mut s = String::new();
        for _ in 0..self.rng.below(8) {
            match self.rng.below(20) {
                0..=1 if escapes => s.push_str(self.rng.pick::<&str>(ESCAPES)),
                2 if newlines => s.push_str(if self.rng.chance(80) { "\n" } else { "\r\n" }),
                3 if escapes && newlines => s.push_str("\\  \n  "),
                4 if self.rng.chance(10) => s.push(char::from(self.rng.below(32) as u8)),
                _ => s.push_str(self.rng.pick::<&str>(STRING_CHARS)),
            }
        }
        s
    }

    fn string(&mut self) -> String {
        match self.rng.below(4) {
            0 => format!("\"{}\"", self.string_body(true, false).replace('"', "\\\"")),
            1 => format!("'{}'", self.string_body(false, false).replace('\'', "")),
            2 => format!("\"\"\"{}\"\"\"", self.string_body(true, true)),
            _ => format!("'''{}'''", self.string_body(false, true)),
        }
    }

    fn blank(&mut self) -> String {
        match self.rng.below(6) {
            0 => "\n".into(),
            1 => " # note\n".into(),
            2 => " ".into(),
            _ => String::new(),
        }
    }

    fn value(&mut self, depth: usize) -> String {
        let kind = if depth > 3 {
            self.rng.below(3)
        } else {
            self.rng.below(6)
        };
        match kind {
            0 => self.string(),
            1 => self.rng.pick(INTEGERS).to_string(),
            2 => self.rng.pick(OTHER_ATOMS).to_string(),
            3 | 4 => {
                let items: Vec<String> = (0..self.rng.below(4))
                    .map(|_| format!("{}{}{}", self.blank(), self.value(depth + 1), self.blank()))
                    .collect();
                let trailing = if !items.is_empty() && self.rng.chance(30) {
                    ","
                } else {
                    ""
                };
                format!("[{}{trailing}]", items.join(","))
            }
            _ => {
                let pairs: Vec<String> = (0..self.rng.below(5))
                    .map(|_| {
                        let blank = if self.rng.chance(20) {
                            self.blank()
                        } else {
                            " ".into()
                        };
                        format!(" {} ={blank}{}", self.key(), self.value(depth + 1))
                    })
                    .collect();
                let trailing = if !pairs.is_empty() && self.rng.chance(20) {
                    ","
                } else {
                    ""
                };
                format!("{{{}{trailing} }}", pairs.join(","))
            }
        }
    }

    fn line(&mut self) -> String {
        match self.rng.below(10) {
            0 => format!("[{}]", self.key()),
            1 => format!("[[{}]]", self.key()),
            2 => "# comment é".into(),
            3 => String::new(),
            _ => format!("{} = {}", self.key(), self.value(0)),
        }
    }

    fn document(&mut self) -> String {
        let newline = if self.rng.chance(10) { "\r\n" } else { "\n" };
        let mut doc: String = (0..1 + self.rng.below(8))
            .map(|_| self.line() + newline)
            .collect();
        if self.rng.chance(10) && !doc.is_empty() {
            // Damage one byte (as a character, to keep it UTF-8).
            let damage = *self.rng.pick(&[
                '"', '\'', '[', ']', '=', '\n', '\r', '\\', '#', '\u{0}', ' ',
            ]);
            let at = self.rng.below(doc.len());
            if doc.is_char_boundary(at) {
                doc.insert(at, damage);
            }
        }
        doc
    }
}

#[test]
fn generated_documents_agree_with_the_toml_crate() {
    let mut generator = Generator {
        rng: Rng(0x2557_7e9a),
    };
    let mut tally = Tally::default();
    for _ in 0..30_000 {
        let doc = generator.document();
        compare(&doc, &mut tally);
    }
    eprintln!("{tally:?}");
    // The generator must keep both sides busy, or the comparison proves little.
    assert!(tally.both_accept > 5_000, "{tally:?}");
    assert!(tally.both_refuse > 5_000, "{tally:?}");
    assert!(tally.unsupported > 500, "{tally:?}");
}

/// Strings with every kind of character a record may hold (host names come from the network).
fn random_string(rng: &mut Rng) -> String {
    (0..rng.below(12))
        .map(|_| match rng.below(4) {
            0 => char::from(rng.below(128) as u8),
            1 => char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('\u{fffd}'),
            _ => *rng.pick(&['"', '\\', '\'', '\n', '\r', 'é', 'a', ' ']),
        })
        .collect()
}

#[test]
fn what_the_writer_emits_the_toml_crate_reads_back() {
    let mut rng = Rng(7);
    for _ in 0..2_000 {
        let mut out = String::new();
        let mut expected = toml::Table::new();
        let mut w = Writer::new(&mut out);
        let s = random_string(&mut rng);
        let n = rng.next() >> 1;
        let list: Vec<String> = (0..rng.below(4)).map(|_| random_string(&mut rng)).collect();
        let numbers: Vec<u64> = (0..rng.below(4))
            .map(|_| rng.next() >> rng.below(64))
            .map(|n| n >> 1)
            .collect();
        w.string("s", &s);
        w.u64("n", n);
        w.boolean("b", n % 2 == 0);
        expected.insert("s".into(), toml::Value::String(s.clone()));
        expected.insert("n".into(), toml::Value::Integer(n as i64));
        expected.insert("b".into(), toml::Value::Boolean(n % 2 == 0));
        let odd_key = random_string(&mut rng);
        w.table(&["t", &odd_key]);
        w.strings("list", &list);
        w.u64s("numbers", &numbers);
        let mut inner = toml::Table::new();
        inner.insert(
            "list".into(),
            toml::Value::Array(list.iter().cloned().map(toml::Value::String).collect()),
        );
        inner.insert(
            "numbers".into(),
            toml::Value::Array(
                numbers
                    .iter()
                    .map(|&n| toml::Value::Integer(n as i64))
                    .collect(),
            ),
        );
        let mut t = toml::Table::new();
        t.insert(odd_key.clone(), toml::Value::Table(inner));
        expected.insert("t".into(), toml::Value::Table(t));
        let mut hosts = Vec::new();
        for _ in 0..rng.below(3) {
            let host = random_string(&mut rng);
            w.array_table(&["lockout", "hosts"]);
            w.string("host", &host);
            let mut h = toml::Table::new();
            h.insert("host".into(), toml::Value::String(host));
            hosts.push(toml::Value::Table(h));
        }
        if !hosts.is_empty() {
            let mut lockout = toml::Table::new();
            lockout.insert("hosts".into(), toml::Value::Array(hosts));
            expected.insert("lockout".into(), toml::Value::Table(lockout));
        }
        w.finish().unwrap();

        let theirs: toml::Table = toml::from_str(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
        assert_eq!(theirs, expected, "{out}");
        let ours = toml_subset::parse(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
        assert_eq!(to_toml_table(&ours), expected, "{out}");
    }
}
