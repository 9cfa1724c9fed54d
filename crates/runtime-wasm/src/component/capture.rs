//! A component's stdout and stderr: bytes kept in memory for the call, with a cap.
//!
//! stdout is the reply: writing past the cap fails the call with [`OutputTooLarge`] (413), as
//! for a module. stderr is log text: bytes past its cap are dropped, the guest does not notice.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

use crate::wasi::OutputTooLarge;

/// One output stream of a call; clones share the bytes.
#[derive(Clone)]
pub(crate) struct Capture {
    bytes: Arc<Mutex<Vec<u8>>>,
    cap: usize,
    /// Writing past `cap` is an error (stdout) rather than silently dropped (stderr).
    strict: bool,
}

impl Capture {
    pub(crate) fn strict(cap: usize) -> Self {
        Self {
            bytes: Arc::default(),
            cap,
            strict: true,
        }
    }

    pub(crate) fn lossy(cap: usize) -> Self {
        Self {
            strict: false,
            ..Self::strict(cap)
        }
    }

    /// Takes what was written so far.
    pub(crate) fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.lock())
    }

    /// Appends `bytes` as the guest would (used for the host's `log`).
    pub(crate) fn append(&self, bytes: &[u8]) -> Result<(), OutputTooLarge> {
        let mut held = self.lock();
        let room = self.cap.saturating_sub(held.len());
        if bytes.len() > room && self.strict {
            return Err(OutputTooLarge);
        }
        held.extend_from_slice(&bytes[..bytes.len().min(room)]);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        // A poisoned lock only means another call panicked while appending bytes.
        self.bytes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for Capture {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.append(&bytes)
            .map_err(|e| StreamError::Trap(wasmtime::Error::new(e)))
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        // Always room: a strict stream fails the write that goes past its cap, with a reason.
        Ok(64 << 10)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for Capture {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(
            self.append(buf)
                .map(|()| buf.len())
                .map_err(std::io::Error::other),
        )
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
