//! Preload hints: the page tells the browser, in its `<head>`, which API requests its
//! script will make first (`<link rel="preload" as="fetch">`), so the server answers them
//! while the browser is still fetching and evaluating the modules, instead of after.
//!
//! A hint is only used when the script's request is the same URL, so the URL is built here
//! exactly as the script builds it: `/api/meta` for every page; for the runs list
//! `/api/runs?` with the page's non-empty parameters in order (a repeated key keeps its first
//! place and its last value, as a JavaScript object does) plus `limit=50` when absent,
//! serialized as `URLSearchParams` does; for a run `/api/runs/{id}`. A hint the script does
//! not use costs one wasted request, nothing else. The page's own module (`list.js`, `run.js`,
//! ...) gets a `modulepreload` hint too, since `app.js` imports it only when it routes.

use std::fmt::Write as _;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::params::Params;

/// What `URLSearchParams` leaves as is: ASCII letters and digits, `*`, `-`, `.` and `_`
/// (space becomes `+`, handled apart).
const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');

/// The runs list's page size when the URL does not give one (`PAGE` in `list.js`).
const LIST_PAGE: &str = "50";

fn form(s: &str) -> String {
    s.split(' ')
        .map(|part| utf8_percent_encode(part, FORM).to_string())
        .collect::<Vec<_>>()
        .join("+")
}

/// The URLs the page at `path` requests first.
pub(crate) fn urls(path: &str, params: &Params) -> Vec<String> {
    let mut urls = vec!["/api/meta".to_owned()];
    if path == "/" {
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        for (k, v) in params.raw() {
            if v.is_empty() {
                continue;
            }
            match pairs.iter_mut().find(|(k2, _)| *k2 == k) {
                Some(p) => p.1 = v,
                None => pairs.push((k, v)),
            }
        }
        if !pairs.iter().any(|(k, _)| *k == "limit") {
            pairs.push(("limit", LIST_PAGE));
        }
        let qs: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", form(k), form(v)))
            .collect();
        urls.push(format!("/api/runs?{}", qs.join("&")));
    } else if let Some(id) = path.strip_prefix("/runs/")
        && id.len() == 36
        && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
    {
        urls.push(format!("/api/runs/{id}"));
    }
    urls
}

/// The modules of the page at `path` (beyond `app.js`, `dom.js` and `api.js`, which every
/// page loads): `app.js` imports each page's module when the page is first shown.
pub(crate) fn modules(path: &str) -> &'static [&'static str] {
    match path {
        "/" => &["/assets/list.js"],
        "/sessions" | "/users" => &["/assets/groups.js"],
        "/overview" => &["/assets/charts.js"],
        p if p.starts_with("/runs/") => &["/assets/run.js", "/assets/chat.js"],
        _ => &[],
    }
}

/// `index` with a preload hint for each of [`urls`] and [`modules`] at the start of its
/// `<head>`.
pub(crate) fn page(index: &[u8], path: &str, params: &Params) -> Vec<u8> {
    let mut hints = String::new();
    for module in modules(path) {
        let _ = writeln!(hints, "<link rel=\"modulepreload\" href=\"{module}\">");
    }
    for url in urls(path, params) {
        // The URL holds only letters, digits, `*-._+%&=?/`: `&` is the one to escape.
        let _ = writeln!(
            hints,
            "<link rel=\"preload\" as=\"fetch\" href=\"{}\" crossorigin=\"anonymous\">",
            url.replace('&', "&amp;")
        );
    }
    let text = String::from_utf8_lossy(index);
    match text.split_once("<head>\n") {
        Some((before, after)) => format!("{before}<head>\n{hints}{after}").into_bytes(),
        None => index.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn urls_are_built_as_the_script_builds_them() {
        let list = |q: &str| urls("/", &Params::parse(q));
        assert_eq!(list(""), ["/api/meta", "/api/runs?limit=50"]);
        assert_eq!(
            list("q=refund+order&tag=eu&tag=vip&error=&offset=50"),
            [
                "/api/meta",
                "/api/runs?q=refund+order&tag=vip&offset=50&limit=50"
            ]
        );
        assert_eq!(
            list("name=%C3%A9mile%2Fx*y&limit=10"),
            ["/api/meta", "/api/runs?name=%C3%A9mile%2Fx*y&limit=10"]
        );
        let id = "0b0e9f6a-1111-4222-8333-444455556666";
        assert_eq!(
            urls(&format!("/runs/{id}"), &Params::default()),
            ["/api/meta".to_owned(), format!("/api/runs/{id}")]
        );
        assert_eq!(urls("/overview", &Params::default()), ["/api/meta"]);
        let html = String::from_utf8(page(
            b"<head>\n</head>",
            &format!("/runs/{id}"),
            &Params::default(),
        ))
        .unwrap();
        assert!(
            html.contains("<link rel=\"modulepreload\" href=\"/assets/run.js\">"),
            "{html}"
        );
    }

    proptest! {
        /// Whatever the query, the hints cannot break out of their attribute or tag.
        #[test]
        fn hints_stay_inside_their_attribute(q in ".{0,80}") {
            let html = String::from_utf8(page(b"<head>\n</head>", "/", &Params::parse(&q))).unwrap();
            for line in html.lines().filter(|l| l.contains("as=\"fetch\"")) {
                let href = line
                    .strip_prefix("<link rel=\"preload\" as=\"fetch\" href=\"")
                    .and_then(|l| l.strip_suffix("\" crossorigin=\"anonymous\">"))
                    .unwrap();
                prop_assert!(!href.contains(['"', '<', '>', '\'', ' ']), "{}", href);
            }
        }
    }
}
