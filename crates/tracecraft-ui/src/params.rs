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
