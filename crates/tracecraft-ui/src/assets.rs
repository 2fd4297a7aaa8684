//! The front end, embedded in the binary: one HTML page, plain JavaScript modules and CSS.
//! No CDN, no build step (ADR 0009).

/// `(path, content type, body)` of every embedded file.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "/assets/app.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/app.css"),
    ),
    ("/assets/app.js", JS, include_bytes!("../assets/app.js")),
    ("/assets/api.js", JS, include_bytes!("../assets/api.js")),
    ("/assets/dom.js", JS, include_bytes!("../assets/dom.js")),
    ("/assets/list.js", JS, include_bytes!("../assets/list.js")),
    ("/assets/run.js", JS, include_bytes!("../assets/run.js")),
    ("/assets/chat.js", JS, include_bytes!("../assets/chat.js")),
    (
        "/assets/charts.js",
        JS,
        include_bytes!("../assets/charts.js"),
    ),
    (
        "/assets/groups.js",
        JS,
        include_bytes!("../assets/groups.js"),
    ),
    (
        "/favicon.svg",
        "image/svg+xml",
        include_bytes!("../assets/favicon.svg"),
    ),
];

const JS: &str = "text/javascript; charset=utf-8";

const INDEX: &[u8] = include_bytes!("../assets/index.html");

/// The page paths the front end routes itself; each gets `index.html`.
fn is_page(path: &str) -> bool {
    matches!(path, "/" | "/sessions" | "/users" | "/overview")
        || path.strip_prefix("/runs/").is_some_and(|id| {
            !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
        })
}

/// The page served at `path` (the index, with preload hints for its first API requests), if
/// `path` is one of the front end's pages.
pub(crate) fn page(path: &str, params: &crate::params::Params) -> Option<Vec<u8>> {
    is_page(path).then(|| crate::preload::page(INDEX, path, params))
}

/// The content type and body served at `path`, if any.
pub(crate) fn get(path: &str) -> Option<(&'static str, &'static [u8])> {
    if is_page(path) {
        return Some(("text/html; charset=utf-8", INDEX));
    }
    FILES
        .iter()
        .find(|(p, _, _)| *p == path)
        .map(|(_, mime, body)| (*mime, *body))
}

#[cfg(test)]
mod tests {
    use super::get;

    #[test]
    fn pages_get_the_index_and_assets_their_type() {
        assert!(get("/").is_some_and(|(m, _)| m.starts_with("text/html")));
        assert!(get("/runs/0b0e9f6a-1111-4222-8333-444455556666").is_some());
        assert!(get("/runs/<script>").is_none());
        assert!(get("/assets/app.js").is_some_and(|(m, _)| m.starts_with("text/javascript")));
        assert!(get("/assets/../Cargo.toml").is_none());
    }

    /// The front end never turns data into markup or code: no HTML sinks, no `eval`-like
    /// calls, no inline script or handlers in the page (the CSP would block them; this keeps
    /// them from being written at all).
    #[test]
    fn the_front_end_has_no_html_or_code_sinks() {
        let banned = [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "setTimeout('",
            "setInterval('",
            "srcdoc",
            "javascript:",
        ];
        for (path, _, body) in super::FILES {
            let text = String::from_utf8_lossy(body);
            for b in banned {
                assert!(!text.contains(b), "{path} contains `{b}`");
            }
        }
        let index = String::from_utf8_lossy(super::INDEX);
        assert!(
            !index.contains("<script>") && !index.contains(" on"),
            "inline script or handler"
        );
        assert!(!index.contains("style="), "inline style");
    }
}
