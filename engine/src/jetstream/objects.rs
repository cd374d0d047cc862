//! The zone's buckets on the engine's object store: its snapshots (design §4.2
//! `bsfg-snapshots-<zone>`, §4.7) and its artifact blobs (`bsfg-blobs-<zone>`, §4.8): named files,
//! put from and fetched into local files, listed and deleted. Each object is chunked and
//! replicated by the engine like any stream (file storage, the zone's replicas).

use std::{
    io,
    path::Path,
    pin::Pin,
    sync::atomic::{AtomicU64, Ordering},
    task::{Context, Poll},
};

use async_nats::jetstream::{object_store, stream::StorageType};
use futures::StreamExt;
use tokio::io::AsyncWrite;

use super::{
    check_name,
    provision::{bucket_failure, create, existing, source_get_failure, Failure},
    Engine, EngineError,
};
use crate::names;

/// Why an object could not be stored, fetched, listed or deleted.
#[derive(Debug, thiserror::Error)]
#[error("engine object {name}: {reason}")]
pub struct ObjectError {
    pub name: String,
    pub reason: String,
}

/// One bucket of a zone.
#[derive(Clone)]
pub struct JetStreamObjects {
    store: object_store::ObjectStore,
}

impl std::fmt::Debug for JetStreamObjects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamObjects").finish()
    }
}

impl Engine {
    /// The zone's snapshot bucket, created if missing.
    pub async fn open_snapshots(&self, zone: &str, replicas: usize) -> Result<JetStreamObjects, EngineError> {
        check_name("zone", zone)?;
        self.open_bucket(names::snapshot_bucket(zone), replicas).await
    }

    /// The zone's artifact blob bucket, created if missing.
    pub async fn open_blobs(&self, zone: &str, replicas: usize) -> Result<JetStreamObjects, EngineError> {
        check_name("zone", zone)?;
        self.open_bucket(names::blob_bucket(zone), replicas).await
    }

    async fn open_bucket(&self, bucket: String, replicas: usize) -> Result<JetStreamObjects, EngineError> {
        let config = object_store::Config {
            bucket: bucket.clone(),
            storage: StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        };
        // Retried through an election or a peer not yet placed, as the log's stream and the KV
        // buckets are (`provision::create`).
        let js = self.context();
        let store = match create(&bucket, || js.create_object_store(config.clone()), bucket_failure).await? {
            Some(store) => store,
            None => existing(&bucket, || js.get_object_store(&bucket), store_get_failure).await?,
        };
        Ok(JetStreamObjects { store })
    }
}

fn store_get_failure(error: &async_nats::jetstream::context::ObjectStoreError) -> Failure {
    source_get_failure(error)
}

impl JetStreamObjects {
    /// Stores the file at `path` as `name` (replacing an object of that name); returns its size.
    pub async fn put_file(&self, name: &str, path: &Path) -> Result<u64, ObjectError> {
        let failed = |reason: String| ObjectError {
            name: name.to_owned(),
            reason,
        };
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|e| failed(format!("{}: {e}", path.display())))?;
        let info = self
            .store
            .put(name, &mut file)
            .await
            .map_err(|e| failed(e.to_string()))?;
        Ok(info.size as u64)
    }

    /// Writes the object `name` into a new file at `path`; returns its size. `copied` counts the
    /// bytes as they land, for whoever reports a long fetch's progress.
    pub async fn get_file(&self, name: &str, path: &Path, copied: &AtomicU64) -> Result<u64, ObjectError> {
        self.fetch(name, path, copied).await?.ok_or_else(|| ObjectError {
            name: name.to_owned(),
            reason: "not found".to_owned(),
        })
    }

    /// As [`JetStreamObjects::get_file`]; `None` (and no file) when the bucket has no `name`.
    pub async fn get_file_if_present(&self, name: &str, path: &Path) -> Result<Option<u64>, ObjectError> {
        self.fetch(name, path, &AtomicU64::new(0)).await
    }

    async fn fetch(&self, name: &str, path: &Path, copied: &AtomicU64) -> Result<Option<u64>, ObjectError> {
        let failed = |reason: String| ObjectError {
            name: name.to_owned(),
            reason,
        };
        let mut object = match self.store.get(name).await {
            Ok(object) => object,
            Err(e) if e.kind() == object_store::GetErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(failed(e.to_string())),
        };
        let mut file = tokio::fs::File::create(path)
            .await
            .map_err(|e| failed(format!("{}: {e}", path.display())))?;
        let mut counted = Counted {
            inner: &mut file,
            copied,
        };
        let copied = tokio::io::copy(&mut object, &mut counted)
            .await
            .map_err(|e| failed(e.to_string()))?;
        file.sync_all().await.map_err(|e| failed(e.to_string()))?;
        Ok(Some(copied))
    }

    /// Every object's name.
    pub async fn names(&self) -> Result<Vec<String>, ObjectError> {
        let failed = |reason: String| ObjectError {
            name: "*".to_owned(),
            reason,
        };
        let mut list = self.store.list().await.map_err(|e| failed(e.to_string()))?;
        let mut names = Vec::new();
        while let Some(info) = list.next().await {
            let info = info.map_err(|e| failed(e.to_string()))?;
            if !info.deleted {
                names.push(info.name);
            }
        }
        Ok(names)
    }

    pub async fn delete(&self, name: &str) -> Result<(), ObjectError> {
        self.store.delete(name).await.map_err(|e| ObjectError {
            name: name.to_owned(),
            reason: e.to_string(),
        })
    }
}

/// A writer that adds every byte written to `copied`.
struct Counted<'a, W> {
    inner: &'a mut W,
    copied: &'a AtomicU64,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Counted<'_, W> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut *self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            self.copied.fetch_add(n as u64, Ordering::Relaxed);
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
}
