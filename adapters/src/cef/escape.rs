//! CEF escaping (protocols.md §4.2). Backslashes first, then the rest, in one pass.

/// Header field (Vendor, Product, Version, Class ID, Name): `\` → `\\`, `|` → `\|`;
/// CR and LF are not allowed and become a space.
pub fn escape_header(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
}

/// Extension value: `\` → `\\`, `=` → `\=`, LF → `\n`, CR → `\r` (so CRLF → `\r\n`).
/// Pipes and spaces are not escaped.
pub fn escape_value(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
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
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate_chars("héllo", 2), "hé");
        assert_eq!(truncate_chars("abc", 10), "abc");
    }
}
