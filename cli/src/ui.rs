//! The web dashboard: a few static files built into the binary, served at
//! `/ui/` on the API listener (`--no-ui` turns it off).
//!
//! The files hold no data and no secret: the page reads everything it
//! shows from the published API (`/v1/...`) in the visitor's browser, with
//! the token the visitor types when the server has one. So the files are
//! served without a token (a browser cannot attach one to a page load) and
//! the API keeps its own rule. Nothing here reaches the engine.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

/// One file of the dashboard.
struct Asset {
    name: &'static str,
    mime: &'static str,
    body: &'static [u8],
    /// A strong validator of `body`, so a reload costs a `304`.
    etag: &'static str,
}

/// The 64-bit FNV-1a hash (a cache validator, not a security measure).
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    h
}

/// `"<16 hex digits>"`, the quoted form an `ETag` header takes.
const fn etag_of(bytes: &[u8]) -> [u8; 18] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let h = fnv1a(bytes);
    let mut out = [b'"'; 18];
    let mut i = 0;
    while i < 16 {
        out[1 + i] = HEX[((h >> (60 - 4 * i)) & 0xf) as usize];
        i += 1;
    }
    out
}

macro_rules! asset {
    ($name:literal, $mime:literal) => {{
        const BODY: &[u8] = include_bytes!(concat!("../assets/ui/", $name));
        const TAG: [u8; 18] = etag_of(BODY);
        Asset {
            name: $name,
            mime: $mime,
            body: BODY,
            etag: match std::str::from_utf8(&TAG) {
                Ok(s) => s,
                Err(_) => panic!("an ETag is ASCII"),
            },
        }
    }};
}

/// Every file the dashboard has; `index.html` is the page itself.
static ASSETS: [Asset; 4] = [
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
];

/// The page may load only its own files and talk only to its own origin;
/// no inline script or style, no frames (so no clickjacking).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Bytes of all the dashboard's files (what a first visit downloads).
pub fn assets_bytes() -> usize {
    ASSETS.iter().map(|a| a.body.len()).sum()
}

/// The dashboard's routes: `GET /ui` (redirects to `/ui/`), `GET /ui/` and
/// `GET /ui/{file}`. They need no token and touch neither the engine nor
/// the disk.
pub fn router() -> Router {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route(
            "/ui/",
            get(|h: HeaderMap| async move { serve("index.html", &h) }),
        )
        .route(
            "/ui/{file}",
            get(|Path(file): Path<String>, h: HeaderMap| async move { serve(&file, &h) }),
        )
}

fn serve(name: &str, request: &HeaderMap) -> Response {
    let Some(a) = ASSETS.iter().find(|a| a.name == name) else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "no such file in the dashboard; open /ui/\n",
        )
            .into_response();
    };
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == a.etag));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, HeaderValue::from_static(a.mime))],
            a.body,
        )
            .into_response()
    };
    let h = resp.headers_mut();
    h.insert(header::ETAG, HeaderValue::from_static(a.etag));
    // Revalidate on every load: a new binary's page is never mixed with
    // an old one's script.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bound is "a few hundred KiB at most"; this keeps the
    /// page well under it (docs/dashboard.md gives the measured weight).
    #[test]
    fn the_assets_stay_small() {
        let total = assets_bytes();
        assert!(total > 1_000, "{total} bytes: an asset is missing");
        assert!(total <= 128 * 1024, "the dashboard weighs {total} bytes");
    }

    #[test]
    fn every_file_the_page_names_is_served() {
        let html = String::from_utf8_lossy(ASSETS[0].body);
        for a in &ASSETS[1..] {
            assert!(
                html.contains(&format!("\"{}\"", a.name)),
                "index.html does not load {}",
                a.name
            );
        }
    }

    /// What the page may ask, as app.js's `ROUTES` lists it.
    const ROUTES: &[&str] = &[
        "GET /v1/ping",
        "GET /v1/status",
        "GET /v1/jobs/{id}",
        "POST /v1/jobs/{id}/requeue",
        "POST /v1/jobs/{id}/cancel",
        "GET /v1/dead",
        "POST /v1/dead/requeue",
        "GET /v1/queues/{name}/jobs",
        "POST /v1/queues/{name}/pause",
        "POST /v1/queues/{name}/resume",
        "POST /v1/queues/{name}/purge",
        "GET /v1/leases",
    ];

    #[test]
    fn the_page_asks_only_the_published_api() {
        // One fetch, behind a guard that refuses any route outside its
        // list: no private route, and no other way to reach the network.
        let js = String::from_utf8_lossy(ASSETS[1].body);
        assert_eq!(js.matches("fetch(").count(), 1);
        assert!(
            js.contains("if (!path.startsWith('/v1/') || !allowed(method || 'GET', path)) throw")
        );
        // The list in app.js is this one, line for line ...
        let start = js.find("const ROUTES = [\n").unwrap_or(0);
        let end = js[start..].find("];").map_or(start, |e| start + e);
        let listed: Vec<&str> = js[start..end]
            .lines()
            .skip(1)
            .map(|l| l.trim().trim_end_matches(',').trim_matches('\''))
            .collect();
        assert_eq!(listed, ROUTES, "app.js's ROUTES");
        // ... and each of its routes is in the published API's document.
        let doc: serde_json::Value =
            serde_json::from_str(&crate::openapi::document_json()).unwrap_or_default();
        for route in ROUTES {
            let (method, path) = route.split_once(' ').unwrap_or_default();
            assert!(
                doc["paths"][path][method.to_lowercase()].is_object(),
                "{route} is not in the API's document"
            );
        }
        for other in [
            "XMLHttpRequest",
            "WebSocket",
            "EventSource",
            "sendBeacon",
            "import(",
        ] {
            assert!(!js.contains(other), "app.js uses {other}");
        }
    }

    #[test]
    fn etags_change_with_the_bytes() {
        assert_ne!(etag_of(b"a"), etag_of(b"b"));
        let tags: std::collections::HashSet<_> = ASSETS.iter().map(|a| a.etag).collect();
        assert_eq!(tags.len(), ASSETS.len());
        assert!(ASSETS.iter().all(|a| a.etag.len() == 18));
    }

    #[test]
    fn a_matching_etag_is_answered_304_and_an_unknown_file_404() {
        let mut h = HeaderMap::new();
        let tag = ASSETS[1].etag;
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"0000000000000000\""),
        );
        assert_eq!(serve("app.js", &h).status(), StatusCode::OK);
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(tag).unwrap_or(HeaderValue::from_static("")),
        );
        assert_eq!(serve("app.js", &h).status(), StatusCode::NOT_MODIFIED);
        assert_eq!(
            serve("../Cargo.toml", &HeaderMap::new()).status(),
            StatusCode::NOT_FOUND
        );
    }
}
