//! Unit tests of the codec: each construct, each refusal with its position, the reader and the
//! writer. `common/tests/toml_subset_diff.rs` compares it with the `toml` crate.

use super::*;

/// A compact, sorted rendering of a tree: `{a=1,b="x",c=[1,{d=true}]}`.
fn show(table: &Table) -> String {
    let parts: Vec<String> = table
        .iter()
        .map(|(k, n)| format!("{k}={}", show_value(&n.value)))
        .collect();
    format!("{{{}}}", parts.join(","))
}

fn show_value(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Integer(n) => n.to_string(),
        Value::Boolean(b) => b.to_string(),
        Value::Array(a) => {
            let items: Vec<String> = a.items.iter().map(|n| show_value(&n.value)).collect();
            format!("[{}]", items.join(","))
        }
        Value::Table(t) => show(t),
    }
}

fn ok(text: &str) -> String {
    match parse(text) {
        Ok(t) => show(&t),
        Err(e) => panic!("{text:?} refused: {e}"),
    }
}

fn err(text: &str) -> Error {
    match parse(text) {
        Ok(t) => panic!("{text:?} accepted: {}", show(&t)),
        Err(e) => e,
    }
}

/// Refused at `line`:`column` with a message containing `needle`.
fn refused(text: &str, line: usize, column: usize, needle: &str) {
    let e = refused_at(text, line, column);
    assert!(e.message.contains(needle), "{text:?}: {}", e.message);
}

/// Refused at `line`:`column`; the error.
fn refused_at(text: &str, line: usize, column: usize) -> Error {
    let e = err(text);
    assert_eq!(
        (e.pos.line, e.pos.column),
        (line, column),
        "{text:?}: {}",
        e.message
    );
    e
}

#[test]
fn comments_blank_lines_and_line_ends() {
    assert_eq!(ok(""), "{}");
    assert_eq!(ok("\n\n# only a comment\n   \t\n"), "{}");
    assert_eq!(ok("a = 1 # one\r\n\r\nb = 2#two"), "{a=1,b=2}");
    assert_eq!(ok("#\u{e9}t\u{e9} \t\na=1"), "{a=1}");
    assert_eq!(ok("\u{feff}a = 1\n"), "{a=1}", "byte-order mark");
}

#[test]
fn tables_and_arrays_of_tables() {
    assert_eq!(
        ok("top = 1\n[t]\nx = 1\n[ u . v ]\ny = 2\n[\"q k\".'l']\n"),
        "{q k={l={}},t={x=1},top=1,u={v={y=2}}}"
    );
    assert_eq!(ok("[a.b]\n[a]\nc = 1"), "{a={b={},c=1}}");
    assert_eq!(
        ok("[lockout]\nn = 0\n[[lockout.hosts]]\nhost = \"a\"\n[[lockout.hosts]]\nhost = \"b\"\n"),
        "{lockout={hosts=[{host=\"a\"},{host=\"b\"}],n=0}}"
    );
    assert_eq!(
        ok("[[a]]\n[a.b]\nx = 1\n[[a]]\n[[a.c]]\n[a.c.d]\n"),
        "{a=[{b={x=1}},{c=[{d={}}]}]}"
    );
    assert_eq!(ok("[[ a ]]\n[[\ta\t]]"), "{a=[{},{}]}");
}

#[test]
fn keys() {
    assert_eq!(
        ok("bare_key-1 = 1\n1234 = 2\n\"quoted \\u00e9\" = 3\n'lit\\' = 4\n\"\" = 5"),
        "{=5,1234=2,bare_key-1=1,lit\\=4,quoted \u{e9}=3}"
    );
    assert_eq!(
        ok("a.b.c = 1\na . b . d = 2\n\"x.y\".z = 3"),
        "{a={b={c=1,d=2}},x.y={z=3}}"
    );
    assert_eq!(ok("[t]\ns.u = 1\n[t.s.v]\n"), "{t={s={u=1,v={}}}}");
}

#[test]
fn basic_strings_and_every_escape() {
    assert_eq!(
        ok(r#"s = "\b\t\n\f\r\e\"\\ \x41 \u00e9 \U0001F600 ok""#),
        format!(
            "{{s={:?}}}",
            "\u{8}\t\n\u{c}\r\u{1b}\"\\ A \u{e9} \u{1f600} ok"
        )
    );
    assert_eq!(
        ok("s = \"tab\there \u{e9}\u{1f600}\""),
        "{s=\"tab\\there é😀\"}"
    );
    assert_eq!(ok("s = \"\""), "{s=\"\"}");
}

#[test]
fn literal_and_multiline_strings() {
    assert_eq!(ok(r"s = 'C:\path\n'"), r#"{s="C:\\path\\n"}"#);
    assert_eq!(
        ok("s = \"\"\"\nline 1\nline 2\"\"\""),
        r#"{s="line 1\nline 2"}"#
    );
    assert_eq!(ok("s = \"\"\"\r\nkept\r\n\"\"\""), r#"{s="kept\r\n"}"#);
    assert_eq!(
        ok("s = \"\"\"one \\\n    two \\   \n\n  three\"\"\""),
        r#"{s="one two three"}"#
    );
    assert_eq!(
        ok("s = \"\"\"a\"b\"\"c\"\"\"\"\""),
        r#"{s="a\"b\"\"c\"\""}"#
    );
    assert_eq!(ok("s = \"\"\"\\\"\"\"\"\""), r#"{s="\"\""}"#);
    assert_eq!(ok("s = '''\nraw \\n '' ''''"), r#"{s="raw \\n '' '"}"#);
    assert_eq!(ok("s = ''''''"), r#"{s=""}"#);
}

#[test]
fn integers_and_booleans() {
    assert_eq!(
        ok(
            "a = 0\nb = +17\nc = -0\nd = 1_000_000\ne = 0xDEAD_beef\nf = 0o755\ng = 0b1010\nh = true\ni = false"
        ),
        "{a=0,b=17,c=0,d=1000000,e=3735928559,f=493,g=10,h=true,i=false}"
    );
    assert_eq!(
        ok("max = 9223372036854775807\nmin = -9223372036854775808\nhex = 0x7fffffffffffffff"),
        "{hex=9223372036854775807,max=9223372036854775807,min=-9223372036854775808}"
    );
}

#[test]
fn arrays_and_inline_tables() {
    assert_eq!(
        ok(
            "a = [ 1, \"two\", [3, [4]], { x = 5 }, ]\nb = []\nc = [\n  1, # one\n  # nothing\n  2\n  ,\n]"
        ),
        "{a=[1,\"two\",[3,[4]],{x=5}],b=[],c=[1,2]}"
    );
    assert_eq!(
        ok("t = { a = 1, b.c = \"x\", b.d = [true], e = {} }"),
        "{t={a=1,b={c=\"x\",d=[true]},e={}}}"
    );
    // TOML 1.1: line breaks, comments and a trailing comma inside { }.
    assert_eq!(
        ok("t = {\n  a = 1, # one\n  b\n  =\n  2,\n}"),
        "{t={a=1,b=2}}"
    );
    assert_eq!(
        ok("hosts = [{ host = \"a\" }, { host = \"b\" }]"),
        "{hosts=[{host=\"a\"},{host=\"b\"}]}"
    );
}

#[test]
fn positions_of_keys_and_values() {
    let t = parse("# c\n  k = \"v\"\n[t]\n\"\u{e9}\u{e9}\" = [1, 2]\nx = { y = 3 }").unwrap();
    assert_eq!(t.get("k").unwrap().pos, Pos { line: 2, column: 7 });
    let inner = match &t.get("t").unwrap().value {
        Value::Table(t) => t,
        other => panic!("{other:?}"),
    };
    assert_eq!(t.get("t").unwrap().pos, Pos { line: 3, column: 2 });
    // Columns count characters, not bytes.
    let array = inner.get("\u{e9}\u{e9}").unwrap();
    assert_eq!(array.pos, Pos { line: 4, column: 8 });
    match &array.value {
        Value::Array(a) => assert_eq!(
            a.items[1].pos,
            Pos {
                line: 4,
                column: 12
            }
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(inner.get("x").unwrap().pos, Pos { line: 5, column: 5 });
}

#[test]
fn syntax_errors_have_positions() {
    let cases: &[(&str, usize, usize, &str)] = &[
        ("a = 1 b = 2", 1, 7, "end of the line"),
        ("[t] x = 1", 1, 5, "end of the line"),
        ("a", 1, 2, "`=`"),
        ("a\n= 1", 1, 2, "`=`"),
        ("= 1", 1, 1, "expected a key"),
        ("\u{e9} = 1", 1, 1, "expected a key"),
        ("a = ", 1, 5, "expected a value"),
        ("a = hello", 1, 5, "invalid value"),
        ("a = True", 1, 5, "invalid value"),
        ("x = 1\na = \"open\nb = 2", 2, 10, "not closed on its line"),
        ("a = \"open", 1, 5, "not closed"),
        ("a = 'open\n", 1, 10, "not closed on its line"),
        ("a = \"\"\"open", 1, 5, "not closed"),
        ("a = '''open", 1, 5, "not closed"),
        ("a = [1, 2", 1, 5, "not closed"),
        ("a = [1 2]", 1, 8, "`,` or `]`"),
        ("a = [,]", 1, 6, "expected a value"),
        ("a = [1,,]", 1, 8, "expected a value"),
        ("a = {b = 1", 1, 5, "not closed"),
        ("a = {b = 1 c = 2}", 1, 12, "`,` or `}`"),
        ("a = {,}", 1, 6, "expected a key"),
        ("a = { b\n.c = 1 }", 2, 1, "`=`"),
        ("[t", 1, 3, "`]`"),
        ("[[t]", 1, 4, "`]]`"),
        ("[[t] ]", 1, 4, "`]]`"),
        ("[]", 1, 2, "expected a key"),
        ("\"\"\"k\"\"\" = 1", 1, 1, "multi-line"),
        ("'''k''' = 1", 1, 1, "multi-line"),
        ("a = 1\r", 1, 6, "carriage return"),
        ("a = 1\rb = 2", 1, 6, "carriage return"),
        ("a = '''x\ry'''", 1, 9, "carriage return"),
        ("a = 1 # bell \u{7}", 1, 14, "comment"),
        ("a = 1 # del \u{7f}", 1, 13, "comment"),
        ("a = \"x\u{7f}\"", 1, 7, "control character"),
        ("a = \"x\u{0}\"", 1, 7, "control character"),
        ("a = 'x\u{1b}'", 1, 7, "control character"),
        ("a = \"\"\"x\u{8}\"\"\"", 1, 9, "control character"),
        ("a = \"\\q\"", 1, 6, "invalid escape"),
        ("a = \"\\ \"", 1, 6, "invalid escape"),
        ("a = \"\\u12\"", 1, 6, "4 hex digits"),
        ("a = \"\\xG1\"", 1, 6, "2 hex digits"),
        ("a = \"\\ud800\"", 1, 6, "not a Unicode character"),
        ("a = \"\\U00110000\"", 1, 6, "not a Unicode character"),
        ("a = \"\"\"x\\  y\"\"\"", 1, 9, "end the line"),
    ];
    for &(text, line, column, needle) in cases {
        refused(text, line, column, needle);
    }
}

#[test]
fn integer_rules() {
    for bad in [
        "01", "+01", "00", "0_1", "1__2", "1_", "_1", "+0x1", "-0x1", "0X1", "0x", "0x_1", "0b2",
        "0o8", "--1", "1-2", "+", "-", "0b1_",
    ] {
        let e = err(&format!("a = {bad}"));
        assert_eq!(e.kind, ErrorKind::Invalid, "{bad}: {}", e.message);
    }
    for big in [
        "9223372036854775808",
        "-9223372036854775809",
        "0xffffffffffffffff",
        "0x8000000000000000",
        "99999999999999999999999",
    ] {
        refused(&format!("a = {big}"), 1, 5, "out of range");
    }
}

#[test]
fn floats_and_date_times_are_refused_as_unsupported() {
    for (value, needle) in [
        ("1.5", "floats"),
        ("-0.0", "floats"),
        ("1e5", "floats"),
        ("6.02E23", "floats"),
        ("inf", "floats"),
        ("-nan", "floats"),
        ("1979-05-27", "date-times"),
        ("1979-05-27T07:32:00Z", "date-times"),
        ("1979-05-27 07:32:00", "date-times"),
        ("07:32:00", "date-times"),
    ] {
        let e = err(&format!("\n  a = {value}"));
        assert_eq!(e.kind, ErrorKind::Unsupported, "{value}");
        assert_eq!((e.pos.line, e.pos.column), (2, 7), "{value}");
        assert!(e.message.contains(needle), "{value}: {}", e.message);
        assert!(
            e.message.contains("not supported"),
            "{value}: {}",
            e.message
        );
    }
    // Inside arrays and inline tables too.
    assert_eq!(err("a = [1, 2.5]").pos.column, 9);
    assert_eq!(err("a = { b = 1979-01-01 }").kind, ErrorKind::Unsupported);
}

#[test]
fn redefinitions_are_refused() {
    let cases: &[(&str, usize, usize)] = &[
        ("a = 1\na = 2", 2, 1),
        ("\"a\" = 1\n'a' = 2", 2, 1),
        ("a = 1\n[a]", 2, 2),
        ("[a]\n[a]", 2, 2),
        ("[a]\n[a.b]\n[a]", 3, 2),
        ("[a]\nb = 1\n[a.b]", 3, 4),
        ("a.b = 1\n[a]", 2, 2),
        ("a.b.c = 1\n[a.b]", 2, 4),
        ("[a.b]\nx = 1\n[a]\nb.y = 2", 4, 1),
        ("a = 1\na.b = 2", 2, 1),
        ("a.b = 1\na = 2", 2, 1),
        ("a = {b = 1}\n[a]", 2, 2),
        ("a = {b = 1}\n[a.c]", 2, 2),
        ("a = {b = 1}\na.c = 2", 2, 1),
        ("a = {b = 1, b = 2}", 1, 13),
        ("a = {b.c = 1, b = 2}", 1, 15),
        ("a = {b = {}, b.c = 1}", 1, 14),
        ("a = []\n[[a]]", 2, 3),
        ("a = [{b = 1}]\n[a.c]", 2, 2),
        ("[[a]]\n[a]", 2, 2),
        ("[a]\n[[a]]", 2, 3),
        ("[a.b]\n[[a]]", 2, 3),
        ("[[t.a]]\n[t]\na.x = 1", 3, 3),
    ];
    for &(text, line, column) in cases {
        let e = refused_at(text, line, column);
        assert_eq!(e.kind, ErrorKind::Invalid, "{text:?}");
    }
    // What TOML does allow: implicit tables defined later, sub-tables of dotted tables.
    assert_eq!(ok("[a.b.c]\n[a]\nb.d = 1"), "{a={b={c={},d=1}}}");
    assert_eq!(ok("[[a.b]]\n[a]"), "{a={b=[{}]}}");
    assert_eq!(ok("[[t.a]]\n[t]\na.x.y = 1"), "{t={a=[{x={y=1}}]}}");
}

#[test]
fn nesting_is_bounded() {
    // Depth counts tables and arrays alike: in `a = [[]]`, `a` is at depth 1, the inner array at 2.
    let nested = |n: usize| format!("a = {}{}", "[".repeat(n), "]".repeat(n));
    assert!(parse(&nested(MAX_DEPTH)).is_ok());
    let e = err(&nested(MAX_DEPTH + 1));
    assert_eq!(e.kind, ErrorKind::Unsupported);
    assert!(e.message.contains("nested"), "{}", e.message);
    assert_eq!(err(&nested(100_000)).kind, ErrorKind::Unsupported);

    let inline = |n: usize| format!("a = {}1{}", "{b = ".repeat(n), "}".repeat(n));
    assert!(parse(&inline(MAX_DEPTH - 1)).is_ok());
    assert_eq!(err(&inline(MAX_DEPTH)).kind, ErrorKind::Unsupported);

    let dotted = |n: usize| format!("{} = 1", vec!["k"; n].join("."));
    assert!(parse(&dotted(MAX_DEPTH)).is_ok());
    assert_eq!(err(&dotted(MAX_DEPTH + 1)).kind, ErrorKind::Unsupported);
    let header = |n: usize| format!("[{}]", vec!["k"; n].join("."));
    assert!(parse(&header(MAX_DEPTH)).is_ok());
    assert_eq!(err(&header(MAX_DEPTH + 1)).kind, ErrorKind::Unsupported);
    // An array of tables counts twice (the array, then its table).
    let tables = |n: usize| {
        (1..=n)
            .map(|i| format!("[[{}]]\n", vec!["k"; i].join(".")))
            .collect::<String>()
    };
    assert!(parse(&tables(MAX_DEPTH / 2)).is_ok());
    assert_eq!(err(&tables(MAX_DEPTH / 2 + 1)).kind, ErrorKind::Unsupported);
    // Depth adds up across a header, a dotted key and an inline table: x is at 20 + 12 + 1.
    let header20 = ["h"; 20].join(".");
    assert!(
        parse(&format!(
            "[{header20}]\n{} = {{ x = 1 }}",
            ["d"; 11].join(".")
        ))
        .is_ok()
    );
    let e = err(&format!(
        "[{header20}]\n{} = {{ x = 1 }}",
        ["d"; 12].join(".")
    ));
    assert_eq!(e.kind, ErrorKind::Unsupported);
}

#[test]
fn long_lines_do_not_take_quadratic_time() {
    let mut text = String::from("a = [");
    for _ in 0..200_000 {
        text.push_str("1,");
    }
    text.push_str("x]");
    let start = std::time::Instant::now();
    let e = err(&text);
    assert_eq!((e.pos.line, e.pos.column), (1, 400_006));
    assert!(start.elapsed().as_secs() < 5);
}

/// Every prefix of a document using everything, and every single-byte change of it, must give
/// a result (no panic); multi-byte characters end up cut in the middle.
#[test]
fn truncated_and_damaged_documents_never_panic() {
    let doc = "# c\u{e9}\n\u{e9}x = 1\n\"k\u{1f600}\" = \"v\\u00e9\\\"\u{e9}\"\n[t.'u']\na = [1, [\"x\"], {b = 'y'}]\n\
               s = \"\"\"\n\u{e9}\\\n  z\"\"\"\nl = '''\u{e9}'''\n[[h]]\nn = -0x1_f\n";
    for end in 0..=doc.len() {
        if let Some(prefix) = doc.get(..end) {
            let _ = parse(prefix);
        }
    }
    let bytes = doc.as_bytes();
    for i in 0..bytes.len() {
        for replacement in [
            b'"', b'\'', b'\\', b'[', b']', b'{', b'}', b'\n', b'=', b'.', b'#', 0u8,
        ] {
            let mut changed = bytes.to_vec();
            changed[i] = replacement;
            if let Ok(text) = std::str::from_utf8(&changed) {
                let _ = parse(text);
            }
        }
    }
}

#[test]
fn fields_take_typed_values() {
    let mut f = Fields::parse(
        "s = \"x\"\nn = 300\nb = true\nl = [\"a\", \"b\"]\nu = [1, 2]\nm = \"two\"\n\
         [t]\ninner = 1\n[[arr]]\nk = 1\n[[arr]]\nk = 2\n",
    )
    .unwrap();
    assert_eq!(f.string("s").unwrap().as_deref(), Some("x"));
    assert_eq!(f.string("nothing").unwrap(), None);
    assert_eq!(f.u16("n").unwrap(), Some(300));
    assert_eq!(f.boolean("b").unwrap(), Some(true));
    assert_eq!(f.strings("l").unwrap().unwrap(), vec!["a", "b"]);
    assert_eq!(f.u64s("u").unwrap().unwrap(), vec![1, 2]);
    assert_eq!(f.choice("m", &[("one", 1), ("two", 2)]).unwrap(), Some(2));
    let mut t = f.table("t").unwrap().unwrap();
    assert_eq!(t.u8("inner").unwrap(), Some(1));
    t.finish().unwrap();
    let arr = f.tables("arr").unwrap().unwrap();
    assert_eq!(arr.len(), 2);
    for (i, mut item) in arr.into_iter().enumerate() {
        assert_eq!(item.u64("k").unwrap(), Some(i as u64 + 1));
        item.finish().unwrap();
    }
    f.finish().unwrap();
}

#[test]
fn field_errors_name_the_key_and_never_the_value() {
    let text = "[totp]\nsecret = \"JBSWY3DPEHPK3PXP\"\ndigits = \"JBSWY3DPEHPK3PXP\"\n";
    let mut f = Fields::parse(text).unwrap();
    let mut totp = f.table("totp").unwrap().unwrap();
    let e = totp.u8("digits").unwrap_err();
    assert_eq!((e.pos.line, e.pos.column), (3, 10));
    assert_eq!(
        e.message,
        "`totp.digits` must be a whole number from 0 to 255"
    );
    let e = totp.boolean("secret").unwrap_err();
    assert!(!e.message.contains("JBSW"), "{}", e.message);
    assert_eq!(totp.missing("period").message, "`totp.period` is missing");
    assert_eq!(totp.missing("period").pos, Pos { line: 1, column: 2 });

    let mut f = Fields::parse("n = 256\nm = -1\nc = \"JBSWY3DP\"\nl = [1]").unwrap();
    assert!(f.u8("n").unwrap_err().message.contains("0 to 255"));
    assert!(f.u64("m").is_err());
    let e = f.choice("c", &[("SHA1", 1)]).unwrap_err();
    assert_eq!(e.message, "`c` must be one of \"SHA1\"");
    assert_eq!(f.strings("l").unwrap_err().pos, Pos { line: 4, column: 6 });
}

#[test]
fn unknown_keys_are_reported_where_they_are() {
    let mut f = Fields::parse("known = 1\n[t]\nz = 1\n\nmistyped = 2\n[zz]\n").unwrap();
    f.u8("known").unwrap();
    let t = f.table("t").unwrap().unwrap();
    let e = t.finish().unwrap_err();
    assert_eq!(e.message, "unknown key `t.z`");
    assert_eq!((e.pos.line, e.pos.column), (3, 1));
    let e = f.finish().unwrap_err();
    assert_eq!(e.message, "unknown key `zz`");
    assert_eq!(e.pos.line, 6);
    let e = Fields::parse("\"bad\\nkey\" = 1")
        .unwrap()
        .finish()
        .unwrap_err();
    assert_eq!(e.message, "unknown key `bad\\nkey`", "escaped for the log");
}

#[test]
fn list_items_are_converted_with_their_position() {
    let mut f = Fields::parse("nets = [\"ok\",\n  \"bad\"]").unwrap();
    let e = f
        .list("nets", |s| {
            if s == "ok" {
                Ok(1)
            } else {
                Err("not a network")
            }
        })
        .unwrap_err();
    assert_eq!(e.message, "`nets`: not a network");
    assert_eq!((e.pos.line, e.pos.column), (2, 3));
}

#[test]
fn writer_layout() {
    let mut out = String::new();
    let mut w = Writer::new(&mut out);
    w.u64("version", 1);
    w.string("user", "alice");
    w.boolean("flag", false);
    w.table(&["lockout"]);
    w.u64s("failures", &[]);
    w.u64s("one", &[7]);
    w.strings("two", &["a".into(), "b".into()]);
    w.array_table(&["lockout", "hosts"]);
    w.string("host", "");
    w.table(&["odd key"]);
    w.u64("n", 2);
    w.finish().unwrap();
    assert_eq!(
        out,
        "version = 1\nuser = \"alice\"\nflag = false\n\n[lockout]\nfailures = []\none = [7]\n\
         two = [\n    \"a\",\n    \"b\",\n]\n\n[[lockout.hosts]]\nhost = \"\"\n\n[\"odd key\"]\nn = 2\n"
    );
}

#[test]
fn writer_escapes_and_round_trips() {
    let tricky = "q\"b\\s\n\t\r\u{8}\u{c}\u{0}\u{1b}\u{7f} \u{e9}\u{1f600}'''\"\"\"";
    let mut out = String::new();
    let mut w = Writer::new(&mut out);
    w.string("s", tricky);
    w.strings("l", &[tricky.into(), String::new()]);
    w.u64("max", i64::MAX as u64);
    w.finish().unwrap();
    assert!(!out.contains('\u{0}') && !out.contains('\u{7f}'), "{out}");
    let mut f = Fields::parse(&out).unwrap();
    assert_eq!(f.string("s").unwrap().as_deref(), Some(tricky));
    assert_eq!(
        f.strings("l").unwrap().unwrap(),
        vec![tricky.to_string(), String::new()]
    );
    assert_eq!(f.u64("max").unwrap(), Some(i64::MAX as u64));
    f.finish().unwrap();
}

#[test]
fn writer_refuses_numbers_toml_cannot_hold() {
    let mut out = String::new();
    let mut w = Writer::new(&mut out);
    w.u64("big", u64::MAX);
    assert!(w.finish().unwrap_err().to_string().contains("too large"));
    let mut out = String::new();
    let mut w = Writer::new(&mut out);
    w.u64s("big", &[1, 1 << 63]);
    assert!(w.finish().is_err());
}
