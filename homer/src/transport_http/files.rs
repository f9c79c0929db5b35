//! Static files for `GET` paths no route takes: from a directory, or from
//! memory (files built into the binary).

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::{Body, error_response, full};
use crate::error::ApiError;
use crate::server::Homer;

fn not_found(path: &str) -> Response<Body> {
    error_response(ApiError::not_found(
        "not_found",
        format!("no route or file for {}", crate::error::truncate(path, 256)),
    ))
}

/// Where static files come from.
#[derive(Clone)]
pub(crate) enum Statics {
    /// A directory, read at each request.
    Dir(PathBuf),
    /// Relative paths (`index.html`, `css/app.css`) to contents.
    Memory(Arc<HashMap<String, Bytes>>),
}

impl fmt::Debug for Statics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Statics::Dir(dir) => f.debug_tuple("Dir").field(dir).finish(),
            Statics::Memory(files) => f
                .debug_struct("Memory")
                .field("files", &files.len())
                .finish(),
        }
    }
}

impl Statics {
    pub(crate) fn memory<I, P, B>(files: I) -> Self
    where
        I: IntoIterator<Item = (P, B)>,
        P: Into<String>,
        B: Into<Bytes>,
    {
        let files = files
            .into_iter()
            .map(|(p, b)| {
                let p: String = p.into();
                (p.trim_start_matches('/').to_owned(), b.into())
            })
            .collect();
        Statics::Memory(Arc::new(files))
    }
}

fn content_type(path: &std::path::Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ico" => "image/x-icon",
        "wasm" => "application/wasm",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// Maps a URL path to a file under `root`, refusing anything that could
/// leave it (`..`, backslashes, NUL, hidden files).
pub(super) fn resolve(root: &std::path::Path, url_path: &str) -> Option<PathBuf> {
    let mut path = root.to_path_buf();
    for seg in url_path.split('/').filter(|s| !s.is_empty()) {
        if seg.starts_with('.') || seg.contains(['\\', '\0', ':']) {
            return None;
        }
        path.push(seg);
    }
    if url_path.ends_with('/') || path == root {
        path.push("index.html");
    }
    Some(path)
}

pub(super) async fn serve(homer: &Homer, req: &Request<Incoming>) -> Response<Body> {
    let url_path = req.uri().path();
    let Some(statics) = homer.inner.statics.as_ref() else {
        return not_found(url_path);
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return error_response(ApiError::new(
            405,
            "method_not_allowed",
            format!(
                "method {} is not allowed on {}",
                req.method(),
                crate::error::truncate(url_path, 256)
            ),
        ));
    }
    let head = req.method() == Method::HEAD;
    let limit = homer.limits().max_static_file;
    let found = match statics {
        Statics::Dir(root) => from_dir(root, url_path, head, limit).await,
        Statics::Memory(files) => from_memory(files, url_path),
    };
    let Some((path, len, body)) = found else {
        return not_found(url_path);
    };
    if len > limit {
        return error_response(ApiError::new(
            413,
            "too_large",
            format!("file of {len} bytes exceeds the {limit}-byte static file limit"),
        ));
    }
    let body = if head { Bytes::new() } else { body };
    let mut res = full(StatusCode::OK, content_type(&path), body);
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

/// A found file: its path (for the content type), its length, and its bytes
/// (empty for `HEAD` and, read from a directory, for a file over `limit`).
type Found = (PathBuf, u64, Bytes);

async fn from_dir(root: &std::path::Path, url_path: &str, head: bool, limit: u64) -> Option<Found> {
    let mut path = resolve(root, url_path)?;
    let mut meta = tokio::fs::metadata(&path).await;
    if meta.as_ref().is_ok_and(|m| m.is_dir()) {
        path.push("index.html");
        meta = tokio::fs::metadata(&path).await;
    }
    let meta = meta.ok().filter(|m| m.is_file())?;
    // Read before answering, so a file that vanished is a 404, not an empty 200.
    let bytes = if head || meta.len() > limit {
        Bytes::new()
    } else {
        Bytes::from(tokio::fs::read(&path).await.ok()?)
    };
    Some((path, meta.len(), bytes))
}

fn from_memory(files: &HashMap<String, Bytes>, url_path: &str) -> Option<Found> {
    // The same paths as a directory: `resolve` refuses what a directory
    // would, and its result relative to an empty root is the key.
    let path = resolve(std::path::Path::new(""), url_path)?;
    let key = |p: &std::path::Path| {
        p.iter()
            .map(|s| s.to_string_lossy())
            .collect::<Vec<_>>()
            .join("/")
    };
    let (path, bytes) = match files.get(&key(&path)) {
        Some(b) => (path, b.clone()),
        None => {
            let index = path.join("index.html");
            let b = files.get(&key(&index))?.clone();
            (index, b)
        }
    };
    Some((path, bytes.len() as u64, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn paths_stay_under_the_root() {
        let root = Path::new("/srv/www");
        assert_eq!(resolve(root, "/"), Some(root.join("index.html")));
        assert_eq!(resolve(root, "/app.js"), Some(root.join("app.js")));
        assert_eq!(resolve(root, "/a//b/"), Some(root.join("a/b/index.html")));
        assert_eq!(resolve(root, "/../etc/passwd"), None);
        assert_eq!(resolve(root, "/a/..%2f"), None);
        assert_eq!(resolve(root, "/a%2e%2e"), Some(root.join("a%2e%2e")));
        assert_eq!(resolve(root, "/.git/config"), None);
        assert_eq!(resolve(root, "/a\\b"), None);
    }
}
