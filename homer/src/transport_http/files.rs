//! Static files for `GET` paths no route takes.

use std::path::PathBuf;

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
    let Some(root) = homer.inner.static_dir.as_ref() else {
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
    let Some(mut path) = resolve(root, url_path) else {
        return not_found(url_path);
    };
    let mut meta = tokio::fs::metadata(&path).await;
    if meta.as_ref().is_ok_and(|m| m.is_dir()) {
        path.push("index.html");
        meta = tokio::fs::metadata(&path).await;
    }
    let Some(meta) = meta.ok().filter(|m| m.is_file()) else {
        return not_found(url_path);
    };
    let limit = homer.limits().max_static_file;
    if meta.len() > limit {
        return error_response(ApiError::new(
            413,
            "too_large",
            format!(
                "file of {} bytes exceeds the {limit}-byte static file limit",
                meta.len()
            ),
        ));
    }
    let body = if req.method() == Method::HEAD {
        Vec::new()
    } else {
        match tokio::fs::read(&path).await {
            Ok(b) => b,
            Err(_) => return not_found(url_path),
        }
    };
    let mut res = full(StatusCode::OK, content_type(&path), body);
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
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
