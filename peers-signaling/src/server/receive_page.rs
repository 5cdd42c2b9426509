//! The receive page (off by default): a browser page that receives a `peers
//! send` transfer by code, served at `/receive/` when
//! [`ServerConfig::receive_page`](super::ServerConfig::receive_page) is set.
//!
//! The page is peers-js's bundle (`peers-js/scripts/bundle-page.mjs`): exactly
//! three files, read into memory once when the server starts, so nothing else of
//! the directory is ever served and a request path never reaches the file system.
//! The code travels in the link's fragment (`/receive/#7-maple-orbit`), which a
//! browser never sends to a server. The server tells a device that creates a
//! `pake` session where the page is (`"receive_page": "/receive/"` in the reply),
//! so `peers send` prints the link beside the code.

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::error::{Error, Result};

/// Where the page is served; the `receive_page` field of a `pake` session's reply.
pub const RECEIVE_PAGE_PATH: &str = "/receive/";

/// The files of the bundle and their content types.
const FILES: [(&str, &str); 3] = [
    ("index.html", "text/html; charset=utf-8"),
    ("receive.js", "text/javascript; charset=utf-8"),
    ("brotli_wasm_bg.wasm", "application/wasm"),
];

/// The page's Content-Security-Policy: its own script and WebAssembly only (no inline
/// or injected script can run, whatever a sender puts in file names), its one inline
/// stylesheet, connections to any signaling server (`?signaling=URL` may name
/// another origin; WebRTC is not governed by CSP), no plugins, frames, base or form
/// targets.
pub const RECEIVE_PAGE_CSP: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; \
     style-src 'unsafe-inline'; connect-src 'self' http: https: ws: wss:; img-src data:; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Largest file of the bundle read (the WebAssembly is about 1 MiB).
const MAX_FILE: u64 = 16 << 20;

/// One file of the page: its name, content type and bytes.
type PageFile = (&'static str, &'static str, Arc<[u8]>);

/// The receive page's files, loaded once.
#[derive(Clone, Debug)]
pub struct ReceivePage {
    files: Arc<[PageFile]>,
}

impl ReceivePage {
    /// Reads the bundle from `dir` (`index.html`, `receive.js`,
    /// `brotli_wasm_bg.wasm`); a missing or oversized file is
    /// [`Error::InvalidConfig`].
    pub fn load(dir: &Path) -> Result<ReceivePage> {
        let invalid = |detail: String| Error::InvalidConfig { field: "receive_page", detail };
        let mut files = Vec::with_capacity(FILES.len());
        for (name, kind) in FILES {
            let path = dir.join(name);
            let size = std::fs::metadata(&path).map_err(|e| invalid(format!("{}: {e}", path.display())))?.len();
            if size > MAX_FILE {
                return Err(invalid(format!("{} is larger than {MAX_FILE} bytes", path.display())));
            }
            let bytes = std::fs::read(&path).map_err(|e| invalid(format!("{}: {e}", path.display())))?;
            files.push((name, kind, Arc::from(bytes)));
        }
        Ok(ReceivePage { files: files.into() })
    }

    fn file(&self, name: &str) -> Response {
        let Some((_, kind, bytes)) = self.files.iter().find(|(n, _, _)| *n == name) else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let mut response = (StatusCode::OK, bytes.to_vec()).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(RECEIVE_PAGE_CSP));
        response
    }

    /// `/receive` (redirected to `/receive/`, so the page's relative URLs
    /// resolve), `/receive/` and the page's two other files.
    pub(super) fn routes(&self) -> Router {
        let mut router = Router::new().route("/receive", get(|| async { Redirect::permanent(RECEIVE_PAGE_PATH) }));
        for &(name, _, _) in self.files.iter() {
            let page = self.clone();
            let route =
                if name == "index.html" { RECEIVE_PAGE_PATH.to_owned() } else { format!("{RECEIVE_PAGE_PATH}{name}") };
            router = router.route(&route, get(move || async move { page.file(name) }));
        }
        router
    }
}
