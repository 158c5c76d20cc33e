//! CEF escaping (protocols.md §4.2): each special byte replaced in one pass, so a backslash
//! the escaping adds is never escaped again; a scan first checks whether there is any.

/// Header field (Vendor, Product, Version, Class ID, Name): `\` → `\\`, `|` → `\|`;
/// CR and LF are not allowed and become a space.
pub fn escape_header(s: &str, out: &mut String) {
    escape_with(s, out, |b| match b {
        b'\\' => Some("\\\\"),
        b'|' => Some("\\|"),
        b'\r' | b'\n' => Some(" "),
        _ => None,
    });
}

/// Extension value: `\` → `\\`, `=` → `\=`, LF → `\n`, CR → `\r` (so CRLF → `\r\n`).
/// Pipes and spaces are not escaped.
pub fn escape_value(s: &str, out: &mut String) {
    escape_with(s, out, |b| match b {
        b'\\' => Some("\\\\"),
        b'=' => Some("\\="),
        b'\n' => Some("\\n"),
        b'\r' => Some("\\r"),
        _ => None,
    });
}

/// Copies `s` into `out` with the bytes `replace` names replaced, run by run. Every byte
/// replaced is ASCII, so every cut falls on a character boundary. Most values have no
/// byte to replace: a first scan without early exit (which the compiler vectorises) finds
/// that at a fraction of the run-by-run loop's cost.
#[inline]
fn escape_with(s: &str, out: &mut String, replace: impl Fn(u8) -> Option<&'static str>) {
    let special = |b: u8| replace(b).is_some();
    if !s.as_bytes().iter().fold(false, |any, &b| any | special(b)) {
        out.push_str(s);
        return;
    }
    out.reserve(s.len());
    let mut run = 0;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        if let Some(replacement) = replace(b) {
            out.push_str(&s[run..i]);
            out.push_str(replacement);
            run = i + 1;
        }
    }
    out.push_str(&s[run..]);
}

/// `escape_header` into a new string.
pub fn header(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_header(s, &mut out);
    out
}

/// `escape_value` into a new string.
pub fn value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_value(s, &mut out);
    out
}

/// At most `max` characters of `s`.
pub fn truncate_chars(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s; // no more characters than bytes
    }
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> String {
        s.bytes().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn protocol_vectors_4_2() {
        // #1 header (Vendor)
        assert_eq!(header("Acme|Labs"), "Acme\\|Labs");
        assert_eq!(hex(&header("Acme|Labs")), "41636d655c7c4c616273");
        // #2 header (Name)
        assert_eq!(
            header("Critical finding: C:\\tmp"),
            "Critical finding: C:\\\\tmp"
        );
        // #3 extension value
        assert_eq!(value("a=b c\\d\nnext"), "a\\=b c\\\\d\\nnext");
        assert_eq!(
            hex(&value("a=b c\\d\nnext")),
            "615c3d6220635c5c645c6e6e657874"
        );
        // #4 already contains backslash-equals
        assert_eq!(value("x\\=y"), "x\\\\\\=y");
        assert_eq!(hex(&value("x\\=y")), "785c5c5c3d79");
        // #5 pipe untouched in extensions
        assert_eq!(value("Path C:\\x|y"), "Path C:\\\\x|y");
        // Extra cases.
        assert_eq!(header("a\\|b"), "a\\\\\\|b");
        assert_eq!(value("k=v\\"), "k\\=v\\\\");
        assert_eq!(value("a\r\nb"), "a\\r\\nb");
        assert_eq!(header("a\r\nb"), "a  b");
        // Multi-byte characters around and between escapes are copied whole.
        assert_eq!(value("é=ü\\😀"), "é\\=ü\\\\😀");
        assert_eq!(header("|é|"), "\\|é\\|");
        assert_eq!(value(""), "");
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate_chars("héllo", 2), "hé");
        assert_eq!(truncate_chars("abc", 10), "abc");
        assert_eq!(truncate_chars("abc", 3), "abc");
        assert_eq!(truncate_chars("ééé", 4), "ééé");
        assert_eq!(truncate_chars("ééé", 1), "é");
    }
}
