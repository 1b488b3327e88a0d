//! The web dashboard at `/ui`: static files written for this project (HTML, CSS, JavaScript
//! modules, no build step), embedded in the binary at compile time and served with strict
//! security headers. The pages talk to the management API (`/api`) and sign in through
//! `/auth/login`; see docs/dashboard.md for what each page shows.
//!
//! # Invariants
//!
//! - Serving a file needs no session: the files hold no data. Every datum the pages show
//!   comes from `/api`, which checks the session cookie and the role.
//! - Every answer carries a Content-Security-Policy that allows scripts, styles and
//!   connections only from this origin and no inline script, `X-Content-Type-Options: nosniff`,
//!   and refuses framing. The pages build the DOM with `textContent`, never `innerHTML`
//!   with data, so a message's text cannot run as script.
//! - Only the files in [`ASSETS`] are served: the name is looked up, never joined to a path.

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Where the dashboard is served.
pub const PREFIX: &str = "/ui";

/// The Content-Security-Policy of every `/ui` answer: this origin only, no inline script or
/// style element, no framing, no plugins, forms post only here.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the dashboard, by the name it is served under (`/ui/<name>`).
const ASSETS: [Asset; 10] = [
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../../ui/index.html"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../../ui/style.css"),
    },
    Asset {
        name: "app.js",
        content_type: JS,
        body: include_str!("../../ui/app.js"),
    },
    Asset {
        name: "api.js",
        content_type: JS,
        body: include_str!("../../ui/api.js"),
    },
    Asset {
        name: "dom.js",
        content_type: JS,
        body: include_str!("../../ui/dom.js"),
    },
    Asset {
        name: "chart.js",
        content_type: JS,
        body: include_str!("../../ui/chart.js"),
    },
    Asset {
        name: "overview.js",
        content_type: JS,
        body: include_str!("../../ui/overview.js"),
    },
    Asset {
        name: "messages.js",
        content_type: JS,
        body: include_str!("../../ui/messages.js"),
    },
    Asset {
        name: "admin.js",
        content_type: JS,
        body: include_str!("../../ui/admin.js"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_str!("../../ui/favicon.svg"),
    },
];

/// The headers every `/ui` answer carries.
fn secured(status: StatusCode, content_type: &'static str, body: &'static str) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // The files change with the binary: revalidate rather than run an old page on a new API.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    (status, headers, body).into_response()
}

/// `GET /ui` and `GET /ui/`: the single page; the routing inside it is by URL fragment.
pub async fn index() -> Response {
    asset_named("index.html")
}

/// `GET /ui/{file}`: one of the embedded files, or 404.
pub async fn asset(Path(file): Path<String>) -> Response {
    asset_named(&file)
}

fn asset_named(name: &str) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(a) => secured(StatusCode::OK, a.content_type, a.body),
        None => secured(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "no such file in the dashboard\n",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_load_only_embedded_files_and_run_no_inline_script() {
        let index = ASSETS[0].body;
        for asset in &ASSETS {
            if asset.name.ends_with(".js") || asset.name.ends_with(".css") {
                assert!(
                    index.contains(&format!("{PREFIX}/{}", asset.name))
                        || ASSETS
                            .iter()
                            .any(|a| a.body.contains(&format!("./{}", asset.name))),
                    "{} is referenced",
                    asset.name
                );
            }
            // The SVG namespace is a name, not a place anything is loaded from.
            let body = asset.body.replace("http://www.w3.org/2000/svg", "");
            assert!(!body.contains("innerHTML"), "{} uses innerHTML", asset.name);
            assert!(!body.contains("eval("), "{} uses eval", asset.name);
            assert!(
                !body.contains("http://"),
                "{} loads from elsewhere",
                asset.name
            );
            assert!(
                !body.contains("https://"),
                "{} loads from elsewhere",
                asset.name
            );
        }
        assert!(!index.contains("<script>"), "no inline script");
        assert!(!index.contains(" style="), "no inline style");
    }

    #[test]
    fn every_answer_carries_the_security_headers_and_unknown_names_are_404() {
        for (name, status, content_type) in [
            ("index.html", StatusCode::OK, "text/html; charset=utf-8"),
            ("app.js", StatusCode::OK, JS),
            (
                "../Cargo.toml",
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
            ),
            (
                "nothing.js",
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
            ),
        ] {
            let r = asset_named(name);
            assert_eq!(r.status(), status, "{name}");
            let h = r.headers();
            assert_eq!(h[header::CONTENT_TYPE], content_type, "{name}");
            assert_eq!(h[header::CONTENT_SECURITY_POLICY], CSP, "{name}");
            assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{name}");
            assert_eq!(h[header::X_FRAME_OPTIONS], "DENY", "{name}");
        }
        assert!(!CSP.contains("unsafe"), "{CSP}");
    }
}
