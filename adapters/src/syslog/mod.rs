//! Syslog message formatting (protocols.md §5): RFC 5424 (default) and RFC 3164 headers.
//! Produces *unframed* messages; framing (octet counting / newline) and datagram limits
//! are the transport's job (`crate::transport::syslog::frame_batch`).

#[cfg(test)]
mod tests;

use time::OffsetDateTime;

/// `PRIVAL = facility × 8 + severity` (facility 0–23, severity 0–7).
pub fn pri(facility: u8, severity: u8) -> u8 {
    facility.min(23) * 8 + severity.min(7)
}

/// One SD-ELEMENT: `[id name="value" ...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdElement {
    pub id: String,
    pub params: Vec<(String, String)>,
}

/// The parts of an RFC 5424 message. Header fields are sanitized when written: anything
/// but printable US-ASCII (33–126) becomes `_`, over-long fields are cut, empty → `-`.
#[derive(Debug, Clone)]
pub struct Rfc5424<'a> {
    pub pri: u8,
    /// An RFC 3339 timestamp as it should appear (see [`rfc5424_timestamp`]), or `-`.
    pub timestamp: &'a str,
    pub hostname: &'a str,
    pub app_name: &'a str,
    pub procid: &'a str,
    pub msgid: &'a str,
    pub structured_data: &'a [SdElement],
    pub msg: &'a [u8],
    /// Prefix MSG with the UTF-8 BOM (RFC 5424 §6.4 "should" for UTF-8 text).
    pub bom: bool,
}

/// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD [SP [BOM]MSG]`.
pub fn format_rfc5424(m: &Rfc5424<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + m.msg.len());
    write_rfc5424(m, &mut out);
    out
}

/// [`format_rfc5424`] appended to `out` (a batch's messages can share one buffer).
pub fn write_rfc5424(m: &Rfc5424<'_>, out: &mut Vec<u8>) {
    out.push(b'<');
    write_pri(m.pri, out);
    out.extend_from_slice(b">1 ");
    header_field(m.timestamp, 64, out);
    out.push(b' ');
    header_field(m.hostname, 255, out);
    out.push(b' ');
    header_field(m.app_name, 48, out);
    out.push(b' ');
    header_field(m.procid, 128, out);
    out.push(b' ');
    header_field(m.msgid, 32, out);
    out.push(b' ');
    if m.structured_data.is_empty() {
        out.push(b'-');
    } else {
        for sd in m.structured_data {
            out.push(b'[');
            sd_name(&sd.id, out);
            for (name, value) in &sd.params {
                out.push(b' ');
                sd_name(name, out);
                out.extend_from_slice(b"=\"");
                for c in value.chars() {
                    if matches!(c, '"' | '\\' | ']') {
                        out.push(b'\\');
                    }
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                out.push(b'"');
            }
            out.push(b']');
        }
    }
    if !m.msg.is_empty() || m.bom {
        out.push(b' ');
        if m.bom {
            out.extend_from_slice(b"\xEF\xBB\xBF");
        }
        out.extend_from_slice(m.msg);
    }
}

/// The parts of an RFC 3164 message: `<PRI>Mmm dd hh:mm:ss HOSTNAME TAG[PID]: MSG`. `time`
/// is written as given (we pass UTC: the format has no zone); TAG is cut at 32
/// alphanumerics.
#[derive(Debug, Clone)]
pub struct Rfc3164<'a> {
    pub pri: u8,
    pub time: OffsetDateTime,
    pub hostname: &'a str,
    pub tag: &'a str,
    pub pid: Option<&'a str>,
    pub msg: &'a [u8],
}

/// The message `m` describes.
pub fn format_rfc3164(m: &Rfc3164<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(48 + m.msg.len());
    write_rfc3164(m, &mut out);
    out
}

/// [`format_rfc3164`] appended to `out` (a batch's messages can share one buffer).
pub fn write_rfc3164(m: &Rfc3164<'_>, out: &mut Vec<u8>) {
    let Rfc3164 {
        pri,
        time,
        hostname,
        tag,
        pid,
        msg,
    } = *m;
    out.push(b'<');
    write_pri(pri, out);
    out.push(b'>');
    write_rfc3164_timestamp(time, out);
    out.push(b' ');
    // No domain part in 3164; an IP address is kept whole (it is allowed as is).
    let host = if hostname.parse::<std::net::IpAddr>().is_ok() {
        hostname
    } else {
        hostname.split('.').next().unwrap_or_default()
    };
    header_field(host, 255, out);
    out.push(b' ');
    let tag_start = out.len();
    out.extend(tag.bytes().filter(u8::is_ascii_alphanumeric).take(32));
    if out.len() == tag_start {
        out.extend_from_slice(b"raxe");
    }
    if let Some(pid) = pid {
        out.push(b'[');
        header_field(pid, 16, out);
        out.push(b']');
    }
    out.extend_from_slice(b": ");
    out.extend_from_slice(msg);
}

/// `Mmm dd hh:mm:ss` with a space-padded day (`Jul  1 12:00:02`).
pub fn rfc3164_timestamp(t: OffsetDateTime) -> String {
    let mut out = Vec::with_capacity(15);
    write_rfc3164_timestamp(t, &mut out);
    String::from_utf8(out).expect("ASCII")
}

fn write_rfc3164_timestamp(t: OffsetDateTime, out: &mut Vec<u8>) {
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let two = |n: u8| [b'0' + n / 10, b'0' + n % 10];
    out.extend_from_slice(MONTHS[u8::from(t.month()) as usize - 1]);
    let day = two(t.day());
    out.extend_from_slice(&[
        b' ',
        if day[0] == b'0' { b' ' } else { day[0] },
        day[1],
        b' ',
    ]);
    for (i, n) in [t.hour(), t.minute(), t.second()].into_iter().enumerate() {
        if i > 0 {
            out.push(b':');
        }
        out.extend_from_slice(&two(n));
    }
}

/// PRI's decimal digits (0–191; no leading zeros), by hand: `format!` cost an allocation
/// per message.
fn write_pri(pri: u8, out: &mut Vec<u8>) {
    if pri >= 100 {
        out.push(b'0' + pri / 100);
    }
    if pri >= 10 {
        out.push(b'0' + pri / 10 % 10);
    }
    out.push(b'0' + pri % 10);
}

/// RFC 5424 timestamp for epoch ms: UTC with milliseconds, `2025-07-01T12:00:00.123Z`.
pub fn rfc5424_timestamp(ms: i64) -> String {
    crate::event::format_rfc3339_ms(ms)
}

fn header_field(s: &str, max: usize, out: &mut Vec<u8>) {
    if s.is_empty() {
        out.push(b'-');
        return;
    }
    out.extend(
        s.bytes()
            .take(max)
            .map(|b| if (33..=126).contains(&b) { b } else { b'_' }),
    );
}

fn sd_name(s: &str, out: &mut Vec<u8>) {
    out.extend(s.bytes().take(32).map(|b| {
        if (33..=126).contains(&b) && !matches!(b, b'=' | b']' | b'"') {
            b
        } else {
            b'_'
        }
    }));
}
