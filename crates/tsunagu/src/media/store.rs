//! Where media lives (`object_store`: the local disk by default, any S3-compatible server by
//! configuration) and how it is served: `GET /media/{name}` at unguessable names, with the
//! right Content-Type and Content-Length, and byte ranges (video players and LINE's servers
//! ask for them).

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use object_store::path::Path as Key;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use tokio::io::AsyncWriteExt;

use crate::app::SharedApp;
use crate::config::Config;

#[derive(Clone, Debug)]
pub struct MediaStore {
    inner: Arc<dyn ObjectStore>,
}

impl MediaStore {
    pub fn from_config(config: &Config) -> anyhow::Result<MediaStore> {
        let m = &config.media;
        let inner: Arc<dyn ObjectStore> = match m.storage.as_str() {
            "s3" => {
                let _ = rustls::crypto::ring::default_provider().install_default();
                let mut b = object_store::aws::AmazonS3Builder::new()
                    .with_bucket_name(&m.s3_bucket)
                    .with_region(&m.s3_region)
                    .with_virtual_hosted_style_request(!m.s3_path_style);
                if !m.s3_endpoint.is_empty() {
                    b = b.with_endpoint(&m.s3_endpoint).with_allow_http(m.s3_endpoint.starts_with("http://"));
                }
                if !m.s3_access_key_id.is_empty() {
                    b = b
                        .with_access_key_id(&m.s3_access_key_id)
                        .with_secret_access_key(m.s3_secret_access_key.expose());
                }
                Arc::new(b.build()?)
            }
            _ => {
                let dir = m.local_dir.clone().unwrap_or_else(|| config.data.dir.join("media"));
                std::fs::create_dir_all(&dir)?;
                Arc::new(object_store::local::LocalFileSystem::new_with_prefix(&dir)?)
            }
        };
        Ok(MediaStore { inner })
    }

    /// Copy a local file into the store under `name`, streaming (multipart for large files).
    pub async fn put_file(&self, name: &str, file: &Path) -> anyhow::Result<u64> {
        let mut src = tokio::fs::File::open(file).await?;
        let mut dst = object_store::buffered::BufWriter::new(self.inner.clone(), Key::from(name));
        let n = tokio::io::copy(&mut src, &mut dst).await?;
        dst.shutdown().await?;
        Ok(n)
    }

    /// Copy `name` from the store into a local file, streaming.
    pub async fn get_file(&self, name: &str, file: &Path) -> anyhow::Result<u64> {
        use futures_util::StreamExt;
        let mut stream = self.inner.get(&Key::from(name)).await?.into_stream();
        let mut dst = tokio::fs::File::create(file).await?;
        let mut n = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            dst.write_all(&chunk).await?;
            n += chunk.len() as u64;
        }
        dst.flush().await?;
        Ok(n)
    }

    pub async fn size(&self, name: &str) -> Option<u64> {
        self.inner.head(&Key::from(name)).await.ok().map(|m| m.size)
    }

    /// Names under `prefix` last written before `before_ms` (Unix ms).
    pub async fn list_older(&self, prefix: &str, before_ms: i64) -> anyhow::Result<Vec<String>> {
        use futures_util::StreamExt;
        let mut stream = self.inner.list(Some(&Key::from(prefix)));
        let mut names = Vec::new();
        while let Some(meta) = stream.next().await {
            let meta = meta?;
            if meta.last_modified.timestamp_millis() < before_ms {
                names.push(meta.location.to_string());
            }
        }
        Ok(names)
    }

    /// Removes a stored file; one that is not there counts as removed (as on S3).
    pub async fn delete(&self, name: &str) -> anyhow::Result<()> {
        match self.inner.delete(&Key::from(name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

pub const MEDIA_CSP: &str = "default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'";

/// A new unguessable name for a stored file (192 random bits) with its extension.
pub fn new_name(ext: &str) -> String {
    format!("{}.{ext}", crate::crypto::random_token(24))
}

/// The public URL of a stored file.
pub fn url(config: &Config, name: &str) -> String {
    format!("{}/media/{name}", config.http.public_url.trim_end_matches('/'))
}

fn content_type(name: &str) -> Option<&'static str> {
    let (stem, ext) = name.rsplit_once('.')?;
    let ok =
        (20..=64).contains(&stem.len()) && stem.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        return None;
    }
    Some(match ext {
        "jpg" => "image/jpeg",
        "png" => "image/png",
        "mp4" => "video/mp4",
        "m4a" => "audio/mp4",
        "mp3" => "audio/mpeg",
        _ => return None,
    })
}

/// One `bytes=` range of a file of `size` bytes: start..end (exclusive), or `Err` when it
/// cannot be satisfied. `None`: no range asked for (or a form we answer in full, such as
/// several ranges).
fn range(headers: &HeaderMap, size: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = headers.get(header::RANGE)?.to_str().ok()?.strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let r = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            if n == 0 || size == 0 { Err(()) } else { Ok((size.saturating_sub(n), size)) }
        }
        (a, "") => {
            let a: u64 = a.parse().ok()?;
            if a >= size { Err(()) } else { Ok((a, size)) }
        }
        (a, b) => {
            let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
            if a > b {
                // Not a valid range at all: ignored, the whole file is sent (RFC 9110 §14.2).
                return None;
            }
            if a >= size { Err(()) } else { Ok((a, b.saturating_add(1).min(size))) }
        }
    };
    Some(r)
}

/// `GET`/`HEAD /media/{name}`.
pub async fn serve(
    State(app): State<SharedApp>,
    method: Method,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let not_found = || (StatusCode::NOT_FOUND, "not found").into_response();
    let Some(mime) = content_type(&name) else { return not_found() };
    let key = Key::from(name.as_str());
    let store = &app.media_store.inner;
    let meta = match store.head(&key).await {
        Ok(m) => m,
        Err(object_store::Error::NotFound { .. }) => return not_found(),
        Err(e) => {
            // The store is unreachable (S3 down): say so, so LINE and players try again.
            tracing::warn!(error = %e, "media store unavailable");
            return (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response();
        }
    };
    let size = meta.size;
    let (status, start, end) = match range(&headers, size) {
        None => (StatusCode::OK, 0, size),
        Some(Ok((a, b))) => (StatusCode::PARTIAL_CONTENT, a, b),
        Some(Err(())) => {
            let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
    };
    let body = if method == Method::HEAD || start == end {
        Body::empty()
    } else {
        let opts = GetOptions { range: Some(GetRange::Bounded(start..end)), ..Default::default() };
        match store.get_opts(&key, opts).await {
            Ok(got) => Body::from_stream(got.into_stream()),
            Err(e) => {
                tracing::warn!(error = %e, "media read failed");
                return (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response();
            }
        }
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    // A name is never reused for other content.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable"));
    // Opened on its own, a picture or video is shown by the browser's viewer, which styles
    // itself inline: allowed, while nothing can run (no script source). Not `sandbox`: a
    // sandboxed document has no origin, so 'self' no longer matches and the player cannot
    // load the file itself (the browser test plays one).
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(MEDIA_CSP));
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", end - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    r
}
