//! The HTTP server loop: hyper with timers and a bounded number of connections, so that every connection
//! has limits in time and the whole server has a limit in descriptors.
//!
//! `axum::serve` configures no timer, which leaves hyper's header-read timeout off, and hyper-util's
//! HTTP/1-or-2 detection reads the first bytes before any timer runs: a client could hold a connection
//! forever by sending nothing, or half of the HTTP/2 preface. Here:
//!
//! - the first bytes must arrive within the request idle timeout: enough of them to tell HTTP/1 from
//!   HTTP/2 (for HTTP/2, the whole preface and the header of the client's first frame); then HTTP/1
//!   connections must deliver each request's headers within the same time (hyper's header-read timer,
//!   which also closes idle keep-alive connections), and HTTP/2 connections are pinged;
//! - at most `max_connections` are open at once; at the limit the server stops accepting (new clients wait
//!   in the kernel's backlog) and logs it once, until a connection closes;
//! - shutdown stops accepting, lets running requests finish for the grace period, then closes what is left.
//!
//! Request bodies have their own idle limit (see [`super::body`]).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use bytes::{Buf as _, Bytes, BytesMut};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// How the server loop treats connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// A client that sends nothing for this long (first bytes, headers, a body) is dropped.
    pub idle: Duration,
    /// Open connections at most.
    pub max_connections: usize,
    /// How long SIGTERM waits for running requests.
    pub grace: Duration,
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The preface and the 9-byte header of the first frame a client must send after it (its SETTINGS).
const H2_OPENING: usize = H2_PREFACE.len() + 9;

pub async fn serve(listener: TcpListener, router: Router, limits: ConnectionLimits, shutdown: CancellationToken) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.idle);
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(Some(limits.idle / 2)).keep_alive_timeout(limits.idle);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut at_limit = false;
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                at_limit = false;
                slot
            }
            Err(_) => {
                if !at_limit {
                    at_limit = true;
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "connection limit reached (FILEGATE_MAX_CONNECTIONS): new connections wait until one closes"
                    );
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
                }
            }
        };
        let (stream, _) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (builder, router, watcher) = (builder.clone(), router.clone(), graceful.watcher());
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _slot = slot; // held until the connection ends
            let opening = tokio::select! {
                opening = tokio::time::timeout(limits.idle, read_opening(stream)) => opening,
                // Nothing was asked yet, so there is nothing to drain.
                () = shutdown.cancelled() => return,
            };
            let io = match opening {
                Ok(Ok(Some(io))) => io,
                Ok(Ok(None)) => return, // closed before sending anything
                Ok(Err(e)) => return tracing::debug!(error = %e, "reading a connection's first bytes failed"),
                Err(_) => return tracing::debug!("a connection sent too little within the idle timeout; closed"),
            };
            let service = TowerToHyperService::new(router);
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
            if let Err(e) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.grace) => {
            tracing::warn!(grace_seconds = limits.grace.as_secs(), "requests still running after the grace period; closing them");
        }
    }
}

/// Reads until the connection is known to be HTTP/1 (its first bytes are not the HTTP/2 preface) or
/// HTTP/2 (the preface and its first frame's header). `None` when the client closes first.
async fn read_opening(mut stream: TcpStream) -> io::Result<Option<Prefixed>> {
    let mut head = BytesMut::with_capacity(1024);
    loop {
        if stream.read_buf(&mut head).await? == 0 {
            return Ok(None);
        }
        let seen = head.len().min(H2_PREFACE.len());
        if head[..seen] != H2_PREFACE[..seen] || head.len() >= H2_OPENING {
            return Ok(Some(Prefixed { head: head.freeze(), stream }));
        }
    }
}

/// A TCP stream whose first bytes were already read: they are replayed before the rest.
struct Prefixed {
    head: Bytes,
    stream: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.head.has_remaining() {
            let n = self.head.len().min(buf.remaining());
            buf.put_slice(&self.head[..n]);
            self.head.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
