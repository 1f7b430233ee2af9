//! The built UI (settings and inspector, `ui/dist`) at `/ui`.
//!
//! Release builds carry the files inside the binary; debug builds read them from `ui/dist`
//! at request time, so `npm run build` shows up without recompiling. The pages hold no data
//! and no secret, so they are served without proxy auth; everything they show comes from
//! `/admin/api/*`, which needs it.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::engine::Engine;

#[derive(rust_embed::Embed)]
#[folder = "ui/dist"]
#[allow_missing = true]
struct Assets;

pub fn routes() -> axum::Router<Engine> {
    axum::Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(|| asset("index.html")))
        .route(
            "/ui/{*path}",
            get(|axum::extract::Path(path): axum::extract::Path<String>| asset(path)),
        )
}

/// Shown when the binary was built before the UI was.
const NOT_BUILT: &str = "<!doctype html><title>llmux</title><h1>The UI is not built</h1>\
    <p>This llmux was built without <code>ui/dist</code>. Run <code>npm ci &amp;&amp; npm run \
    build</code> in the repository (scripts/run does it when Node.js is installed), then \
    build llmux again. The proxy itself works without it.</p>";

async fn asset(path: impl AsRef<str>) -> Response {
    let path = path.as_ref();
    if path.split(['/', '\\']).any(|segment| segment == "..") {
        return (StatusCode::NOT_FOUND, "no such file in the UI").into_response();
    }
    let Some(file) = Assets::get(path) else {
        if path == "index.html" {
            return (StatusCode::SERVICE_UNAVAILABLE, Html(NOT_BUILT)).into_response();
        }
        return (StatusCode::NOT_FOUND, "no such file in the UI").into_response();
    };
    let mut response = file.data.into_owned().into_response();
    let headers = response.headers_mut();
    if let Ok(mime) = HeaderValue::from_str(file.metadata.mimetype()) {
        headers.insert(header::CONTENT_TYPE, mime);
    }
    // Vite puts a content hash in every name under assets/; the page itself must be fresh.
    let cache = if path.starts_with("assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
             frame-ancestors 'none'",
        ),
    );
    response
}
