//! Upload lifecycle events (created, finished, terminated, expired), emitted by the tus
//! endpoint at the moment each becomes durable, for whoever listens: the metrics count them,
//! the hooks deliver them. With no listener an emit is one read lock on an empty list.

use std::sync::{Arc, RwLock};

use futures_util::future::BoxFuture;

use crate::store::upload::UploadInfo;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Created,
    Finished,
    Terminated,
    Expired,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Created => "created",
            Kind::Finished => "finished",
            Kind::Terminated => "terminated",
            Kind::Expired => "expired",
        }
    }
}

/// One event: what happened to which upload, and where a finished one was published.
#[derive(Debug, Clone)]
pub struct UploadEvent {
    pub kind: Kind,
    pub info: UploadInfo,
    /// The served path of a finished upload (`dir/name`, no leading `/`).
    pub published: Option<String>,
}

/// Something that wants upload events. `event` is awaited before the request that caused it
/// answers, so a listener that must not lose events (the hook queue) can write them durably.
pub trait Listener: Send + Sync {
    fn event<'a>(&'a self, e: &'a UploadEvent) -> BoxFuture<'a, ()>;
}

#[derive(Default)]
pub struct Events {
    listeners: RwLock<Vec<Arc<dyn Listener>>>,
}

impl Events {
    pub fn subscribe(&self, l: Arc<dyn Listener>) {
        self.listeners
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(l);
    }

    pub async fn emit(&self, kind: Kind, info: &UploadInfo, published: Option<&str>) {
        let listeners = self
            .listeners
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if listeners.is_empty() {
            return;
        }
        let e = UploadEvent {
            kind,
            info: info.clone(),
            published: published.map(str::to_string),
        };
        for l in listeners {
            l.event(&e).await;
        }
    }
}
