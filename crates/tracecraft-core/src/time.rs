//! UTC timestamps in the wire format: ISO-8601 / RFC 3339 with an explicit offset.
//!
//! Serialization writes `Z` and, like the Python package, drops the fraction when it is zero;
//! otherwise it writes 6 digits (microseconds) or 9 (nanoseconds) so that parse -> serialize is
//! lossless. Parsing accepts any RFC 3339 offset (`Z`, `+00:00`, `+02:00`) and converts to UTC;
//! a timestamp without an offset is rejected, because its instant is ambiguous.

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};
use serde::{Deserializer, Serializer};

/// The current time, truncated to microseconds (the precision Python's `datetime` keeps).
#[must_use]
pub fn now() -> DateTime<Utc> {
    let t = Utc::now();
    let micros = t.nanosecond() / 1_000 * 1_000;
    t.with_nanosecond(micros).unwrap_or(t)
}

/// Formats a timestamp in the wire format.
#[must_use]
pub fn format(t: &DateTime<Utc>) -> String {
    let mut buf = TimeBuf::new();
    buf.format(t).into_owned()
}

/// Calls `f` with `t` in the wire format (as [`format()`] returns it), formatted on the stack:
/// for encoders that copy the text and need no `String` per timestamp. (Years outside 0-9999
/// and leap seconds are formatted by chrono, into a `String`.)
pub fn with_formatted<R>(t: &DateTime<Utc>, f: impl FnOnce(&str) -> R) -> R {
    f(&TimeBuf::new().format(t))
}

/// A stack buffer for one formatted timestamp: serializers format into it instead of
/// allocating a `String` per timestamp (a run has ~40).
struct TimeBuf {
    bytes: [u8; 30],
}

impl TimeBuf {
    fn new() -> Self {
        TimeBuf { bytes: [0; 30] }
    }

    /// `t` in the wire format: `YYYY-MM-DDTHH:MM:SS[.ffffff|.fffffffff]Z`, as
    /// [`format_slow`] (chrono) writes it; years outside 0-9999 and leap seconds go to chrono.
    fn format(&mut self, t: &DateTime<Utc>) -> std::borrow::Cow<'_, str> {
        match self.format_ascii(t) {
            // Only ASCII digits and separators were written.
            Some(b) => std::borrow::Cow::Borrowed(std::str::from_utf8(b).unwrap_or_default()),
            None => std::borrow::Cow::Owned(format_slow(t)),
        }
    }

    /// The bytes of [`TimeBuf::format`] when the fast path applies (`None`: ask chrono).
    /// They are ASCII digits and `-:.TZ` only, so JSON writers may quote them as they are.
    fn format_ascii(&mut self, t: &DateTime<Utc>) -> Option<&[u8]> {
        // One conversion to the naive UTC date and time: each accessor of `DateTime<Utc>`
        // would convert again.
        let t = t.naive_utc();
        let (year, nanos) = (t.year(), t.nanosecond());
        if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
            return None;
        }
        let b = &mut self.bytes;
        let mut put = |at: usize, width: usize, mut v: u32| {
            for i in (at..at + width).rev() {
                b[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, 4, year as u32);
        put(5, 2, t.month());
        put(8, 2, t.day());
        put(11, 2, t.hour());
        put(14, 2, t.minute());
        put(17, 2, t.second());
        let end = if nanos == 0 {
            19
        } else if nanos.is_multiple_of(1_000) {
            put(20, 6, nanos / 1_000);
            26
        } else {
            put(20, 9, nanos);
            29
        };
        b[4] = b'-';
        b[7] = b'-';
        b[10] = b'T';
        b[13] = b':';
        b[16] = b':';
        b[19] = b'.';
        b[end] = b'Z';
        Some(&b[..=end])
    }
}

/// Appends `t` in the wire format as a JSON string (quoted) to `out`: the fast path's bytes
/// need no escaping; anything else (chrono's output) is written by serde_json.
pub(crate) fn write_json_string(out: &mut Vec<u8>, t: &DateTime<Utc>) {
    let mut buf = TimeBuf::new();
    match buf.format_ascii(t) {
        Some(b) => {
            out.push(b'"');
            out.extend_from_slice(b);
            out.push(b'"');
        }
        None => crate::json::write_str(out, &format_slow(t)),
    }
}

/// The wire format through chrono (the reference for [`TimeBuf::format`]).
fn format_slow(t: &DateTime<Utc>) -> String {
    let nanos = t.nanosecond();
    let precision = if nanos == 0 {
        SecondsFormat::Secs
    } else if nanos.is_multiple_of(1_000) {
        SecondsFormat::Micros
    } else {
        SecondsFormat::Nanos
    };
    t.to_rfc3339_opts(precision, true)
}

/// Parses a wire-format timestamp.
///
/// # Errors
/// A message (never the input itself) saying what is expected.
pub fn parse(s: &str) -> Result<DateTime<Utc>, &'static str> {
    if let Some(t) = parse_canonical(s) {
        return Ok(t);
    }
    // Python's isoformat() may use a space instead of 'T'; RFC 3339 allows it too.
    match DateTime::parse_from_rfc3339(s) {
        Ok(t) => Ok(t.with_timezone(&Utc)),
        Err(_) => {
            let has_zone = s.ends_with('Z')
                || s.ends_with('z')
                || s.rfind(['+', '-'])
                    .is_some_and(|i| i > 10 && s[i..].contains(':'));
            if has_zone {
                Err("invalid timestamp: expected ISO-8601 / RFC 3339, e.g. 2026-11-24T09:13:00Z")
            } else {
                Err(
                    "timestamp has no UTC offset: expected ISO-8601 with 'Z' or '+00:00', e.g. 2026-11-24T09:13:00Z",
                )
            }
        }
    }
}

/// The form TraceCraft writes, `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z`, read without chrono's general
/// RFC 3339 parser (a run has ~40 timestamps). `None` for anything else (other offsets,
/// lower-case or space separators, leap seconds, more than 9 fraction digits, an invalid
/// date or time), which [`parse`] hands to chrono: for every string this accepts, chrono
/// returns the same instant (a test compares the two).
fn parse_canonical(s: &str) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    if b.len() < 20 || b.len() == 21 || b.len() > 30 || b[b.len() - 1] != b'Z' {
        return None;
    }
    let digits = |at: usize, n: usize| -> Option<u32> {
        b.get(at..at + n)?.iter().try_fold(0u32, |v, &c| {
            c.is_ascii_digit().then(|| v * 10 + u32::from(c - b'0'))
        })
    };
    let seps = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if seps.iter().any(|&(i, c)| b[i] != c) {
        return None;
    }
    let nanos = if b.len() > 20 {
        let n = b.len() - 21;
        if b[19] != b'.' {
            return None;
        }
        digits(20, n)? * 10u32.pow(9 - n as u32)
    } else {
        0
    };
    let date = chrono::NaiveDate::from_ymd_opt(
        i32::try_from(digits(0, 4)?).ok()?,
        digits(5, 2)?,
        digits(8, 2)?,
    )?;
    let (h, m, sec) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    if sec > 59 {
        return None;
    }
    let time = chrono::NaiveTime::from_hms_nano_opt(h, m, sec, nanos)?;
    Some(date.and_time(time).and_utc())
}

/// Parses a timestamp from a borrowed (or transient) string: no `String` per timestamp.
struct TimeVisitor;

impl serde::de::Visitor<'_> for TimeVisitor {
    type Value = DateTime<Utc>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an ISO-8601 / RFC 3339 timestamp string")
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
        parse(s).map_err(E::custom)
    }
}

/// [`TimeVisitor`] or `null`.
struct OptionTimeVisitor;

impl<'de> serde::de::Visitor<'de> for OptionTimeVisitor {
    type Value = Option<DateTime<Utc>>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("null or an ISO-8601 / RFC 3339 timestamp string")
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(TimeVisitor).map(Some)
    }
}

/// `serde(with = "...")` module for `DateTime<Utc>` fields.
pub mod rfc3339 {
    use super::{DateTime, Deserializer, Serializer, Utc};

    /// Serializes in the wire format.
    ///
    /// # Errors
    /// Only the serializer's own errors.
    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::TimeBuf::new().format(t))
    }

    /// Deserializes from the wire format.
    ///
    /// # Errors
    /// When the value is not a string or not a timestamp with an offset.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        d.deserialize_str(super::TimeVisitor)
    }
}

/// `serde(with = "...")` module for `Option<DateTime<Utc>>` fields (`null` is `None`).
pub mod rfc3339_option {
    use super::{DateTime, Deserializer, Serializer, Utc};

    /// Serializes in the wire format, `None` as `null`.
    ///
    /// # Errors
    /// Only the serializer's own errors.
    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&super::TimeBuf::new().format(t)),
            None => s.serialize_none(),
        }
    }

    /// Deserializes from the wire format or `null`.
    ///
    /// # Errors
    /// When the value is neither `null` nor a timestamp with an offset.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        d.deserialize_option(super::OptionTimeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_python() {
        let t = parse("2026-11-24T09:13:00Z").unwrap();
        assert_eq!(format(&t), "2026-11-24T09:13:00Z");
        let t = parse("2026-11-24T09:13:00.123456+00:00").unwrap();
        assert_eq!(format(&t), "2026-11-24T09:13:00.123456Z");
        let t = parse("2026-11-24T09:13:00.123456789Z").unwrap();
        assert_eq!(format(&t), "2026-11-24T09:13:00.123456789Z");
    }

    #[test]
    fn stack_formatter_matches_chrono() {
        use chrono::TimeZone;
        let mut cases = vec![
            Utc.timestamp_opt(0, 0).unwrap(),
            Utc.timestamp_opt(1_764_000_000, 123_000).unwrap(),
            Utc.timestamp_opt(1_764_000_000, 1_000).unwrap(),
            Utc.timestamp_opt(1_764_000_000, 999_999_999).unwrap(),
            Utc.timestamp_opt(1_764_000_000, 5).unwrap(),
            Utc.timestamp_opt(1_764_000_059, 1_500_000_000).unwrap(), // leap second
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(10_000, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(-1, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(7, 3, 9, 4, 5, 6).unwrap(),
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let secs = (x % 400_000_000_000) as i64 - 62_000_000_000;
            let nanos = match x % 3 {
                0 => 0,
                1 => (x >> 20) as u32 % 1_000_000 * 1_000,
                _ => (x >> 20) as u32 % 1_000_000_000,
            };
            cases.push(Utc.timestamp_opt(secs, nanos).unwrap());
        }
        for t in cases {
            assert_eq!(TimeBuf::new().format(&t), format_slow(&t), "{t:?}");
            assert_eq!(with_formatted(&t, str::to_owned), format_slow(&t), "{t:?}");
        }
    }

    #[test]
    fn canonical_parser_agrees_with_chrono() {
        let chrono_parse = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        };
        let mut cases: Vec<String> = [
            "2026-11-24T09:13:00Z",
            "2026-11-24T09:13:00.5Z",
            "2026-11-24T09:13:00.123456Z",
            "2026-11-24T09:13:00.123456789Z",
            "2026-11-24T09:13:00.1234567890Z",
            "2026-11-24T09:13:00.Z",
            "2026-11-24T23:59:60Z",
            "2026-11-24T23:59:60.5Z",
            "2026-02-29T00:00:00Z",
            "2024-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-00-01T00:00:00Z",
            "2026-01-00T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:60:00Z",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999999Z",
            "2026-11-24t09:13:00Z",
            "2026-11-24 09:13:00Z",
            "2026-11-24T09:13:00z",
            "2026-11-24T09:13:00+00:00",
            "2026-11-24T09:13:00",
            "+2026-11-24T09:13:00Z",
            "2026-1a-24T09:13:00Z",
            "2026-11-24T09:13:0٠Z",
            "",
        ]
        .map(str::to_owned)
        .to_vec();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Digits in every field, some out of range; 0-10 fraction digits.
            let f = |k: u32, m: u64| (x >> k) % m;
            let frac_len = f(40, 11) as usize;
            let frac: String = (0..frac_len)
                .map(|i| char::from(b'0' + ((x >> (i * 3)) % 10) as u8))
                .collect();
            cases.push(format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{}{}Z",
                f(0, 10_000),
                f(14, 14),
                f(18, 33),
                f(23, 26),
                f(28, 62),
                f(34, 62),
                if frac_len > 0 || x.is_multiple_of(7) {
                    "."
                } else {
                    ""
                },
                frac
            ));
        }
        for s in &cases {
            let fast = parse_canonical(s);
            if let Some(t) = fast {
                assert_eq!(Some(t), chrono_parse(s), "{s}");
            }
            assert_eq!(parse(s).ok(), chrono_parse(s), "{s}");
        }
        // The fast path is taken for what TraceCraft writes.
        for s in &cases[..3] {
            assert!(parse_canonical(s).is_some(), "{s}");
        }
    }

    #[test]
    fn converts_offsets_to_utc() {
        let t = parse("2026-11-24T11:13:00+02:00").unwrap();
        assert_eq!(format(&t), "2026-11-24T09:13:00Z");
    }

    #[test]
    fn rejects_missing_zone_with_clear_message() {
        let e = parse("2026-11-24T09:13:00").unwrap_err();
        assert!(e.contains("no UTC offset"), "{e}");
        let e = parse("2026-11-24T09:13:00.5").unwrap_err();
        assert!(e.contains("no UTC offset"), "{e}");
        let e = parse("yesterday").unwrap_err();
        assert!(
            e.contains("no UTC offset") || e.contains("invalid timestamp"),
            "{e}"
        );
        let e = parse("2026-13-45T09:13:00Z").unwrap_err();
        assert!(e.contains("invalid timestamp"), "{e}");
    }

    #[test]
    fn now_is_microsecond_precision() {
        assert_eq!(now().nanosecond() % 1_000, 0);
    }
}
