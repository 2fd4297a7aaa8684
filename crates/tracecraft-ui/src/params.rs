//! Query-string parameters (`application/x-www-form-urlencoded`).

use percent_encoding::percent_decode_str;

/// The decoded `key=value` pairs of a query string, in order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    /// Decodes `a=1&b=x+y&c=%3C`; malformed escapes are kept as they are, invalid UTF-8 is
    /// replaced.
    pub(crate) fn parse(query: &str) -> Self {
        let decode = |s: &str| {
            let s = s.replace('+', " ");
            percent_decode_str(&s).decode_utf8_lossy().into_owned()
        };
        Params(
            query
                .split('&')
                .filter(|kv| !kv.is_empty())
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) => (decode(k), decode(v)),
                    None => (decode(kv), String::new()),
                })
                .collect(),
        )
    }

    /// The decoded pairs as given (untrimmed, empty values included), in order.
    pub(crate) fn raw(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The first non-empty value of `key`, trimmed.
    pub(crate) fn get<'a>(&'a self, key: &'a str) -> Option<&'a str> {
        self.all(key).next()
    }

    /// Every non-empty value of `key`, trimmed.
    pub(crate) fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::Params;
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    use proptest::prelude::*;

    proptest! {
        /// Any query string parses without panicking.
        #[test]
        fn any_query_parses(q in ".{0,200}") {
            let _ = Params::parse(&q).get("q");
        }

        /// Encoded pairs decode to themselves (values trimmed, empty ones skipped).
        #[test]
        fn encoded_pairs_round_trip(pairs in proptest::collection::vec(("[a-z_]{1,8}", ".{0,40}"), 0..8)) {
            let q = pairs
                .iter()
                .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, NON_ALPHANUMERIC)))
                .collect::<Vec<_>>()
                .join("&");
            let p = Params::parse(&q);
            for (k, _) in &pairs {
                let want: Vec<&str> = pairs
                    .iter()
                    .filter(|(k2, _)| k2 == k)
                    .map(|(_, v)| v.trim())
                    .filter(|v| !v.is_empty())
                    .collect();
                prop_assert_eq!(p.all(k).collect::<Vec<_>>(), want);
            }
        }
    }

    #[test]
    fn decodes_plus_escapes_and_repeats() {
        let p = Params::parse("q=a+b%3Cc&tag=x&tag=&tag=y&flag&bad=%zz");
        assert_eq!(p.get("q"), Some("a b<c"));
        assert_eq!(p.all("tag").collect::<Vec<_>>(), ["x", "y"]);
        assert_eq!(p.get("flag"), None);
        assert_eq!(p.get("bad"), Some("%zz"));
        assert_eq!(p.get("missing"), None);
    }
}
