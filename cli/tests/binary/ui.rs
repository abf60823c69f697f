//! The dashboard's files on the API listener: served without a token (they
//! hold no data; the page sends the token to the API), the API's own rule
//! unchanged, and `--no-ui` / `ui = false` turning them off. The page
//! itself is tested in a browser by tests/e2e.

use beaver_cli::client::Server;

use crate::common::*;

#[test]
fn the_dashboard_needs_no_token_and_the_api_still_does() {
    let s = Scratch::new(FAST_CONFIG);
    let p = Proc::start(&s, &["--handler", "noop", "--token", "ui-t0ken"]);
    let anon = Server::new(&p.api, None).expect("url");
    let page = anon.get("/ui/").expect("GET /ui/");
    assert_eq!(page.status, 200, "{}", page.text());
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = page.header("content-security-policy").unwrap_or("");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    assert!(page.text().contains("src=\"app.js\""));
    for (file, mime) in [
        ("app.js", "text/javascript"),
        ("style.css", "text/css"),
        ("icon.svg", "image/svg+xml"),
    ] {
        let r = anon.get(&format!("/ui/{file}")).expect("asset");
        assert_eq!(r.status, 200, "{file}");
        assert!(
            r.header("content-type").unwrap_or("").starts_with(mime),
            "{file}"
        );
        assert_eq!(r.header("cache-control"), Some("no-cache"), "{file}");
    }
    assert_eq!(anon.get("/ui/missing.js").expect("404").status, 404);
    let bare = anon.get("/ui").expect("GET /ui");
    assert_eq!(bare.status, 308);
    assert_eq!(bare.header("location"), Some("/ui/"));
    // The data stays behind the token.
    assert_eq!(anon.get("/v1/status").expect("status").status, 401);
    let authed = Server::new(&p.api, Some("ui-t0ken".into())).expect("url");
    assert_eq!(authed.get("/v1/status").expect("status").status, 200);
}

#[test]
fn no_ui_turns_the_dashboard_off_by_flag_or_by_file() {
    let s = Scratch::new(FAST_CONFIG);
    let p = Proc::start(&s, &["--handler", "noop", "--no-ui"]);
    assert_eq!(p.server().get("/ui/").expect("GET").status, 404);
    assert!(!p.log_text().contains("/ui/"));
    drop(p);
    let s = Scratch::new(&format!("ui = false\n{FAST_CONFIG}"));
    let p = Proc::start(&s, &["--handler", "noop"]);
    assert_eq!(p.server().get("/ui/").expect("GET").status, 404);
    assert_eq!(p.server().get("/v1/ping").expect("ping").status, 200);
}
