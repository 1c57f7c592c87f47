//! A TCP proxy in front of a dependency (PostgreSQL, a bucket, the upstream, a receiver, an import
//! source) that plays the faults a network plays: added latency, a bandwidth cap, connections reset after
//! some bytes, a blackhole (packets go nowhere, nothing is closed), a half-open peer (it reads and never
//! answers). It runs on a thread and runtime of its own, so a test's own runtime (and its blocking waits)
//! never slows it, and faults apply to new and established connections alike, as a network's do.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does to the traffic now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Passes everything on.
    None,
    /// Each burst of traffic (a request, a reply: bytes after a pause of 50 ms or more) waits this long,
    /// in each direction, as over a long path.
    Latency(Duration),
    /// At most this many bytes a second in each direction, per connection.
    Bandwidth(u64),
    /// Every connection is reset (RST) once this many more bytes went towards the dependency — mid-body;
    /// new connections too.
    ResetAfter(u64),
    /// Nothing passes and nothing is closed: connections and new connects hang, as when a host vanishes.
    Blackhole,
    /// New connections are accepted and what they send is read, but nothing ever comes back.
    HalfOpen,
}

/// A wait for bytes after which they are a new burst (a new request or reply).
const BURST_GAP: Duration = Duration::from_millis(50);

pub struct FaultProxy {
    pub addr: SocketAddr,
    fault: Arc<Mutex<Fault>>,
    _runtime: std::thread::JoinHandle<()>,
    stop: Arc<tokio::sync::Notify>,
}

impl FaultProxy {
    /// A proxy on a loopback port of its own, to `target`.
    pub fn start(target: SocketAddr) -> Self {
        let fault = Arc::new(Mutex::new(Fault::None));
        let stop = Arc::new(tokio::sync::Notify::new());
        let (ready, bound) = std::sync::mpsc::channel();
        let (fault_in, stop_in) = (fault.clone(), stop.clone());
        let runtime = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                ready.send(listener.local_addr().unwrap()).unwrap();
                loop {
                    let accepted = tokio::select! {
                        () = stop_in.notified() => return,
                        accepted = listener.accept() => accepted,
                    };
                    let Ok((client, _)) = accepted else { continue };
                    tokio::spawn(connection(client, target, fault_in.clone()));
                }
            });
        });
        let addr = bound.recv().unwrap();
        Self { addr, fault, _runtime: runtime, stop }
    }

    pub fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }

    /// `host:port` of the proxy.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.notify_one();
    }
}

fn current(fault: &Mutex<Fault>) -> Fault {
    *fault.lock().unwrap()
}

/// Waits while the proxy is a blackhole (or holds a half-open peer), then says whether to go on.
async fn wait_out_the_dark(fault: &Mutex<Fault>) {
    while matches!(current(fault), Fault::Blackhole | Fault::HalfOpen) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn connection(client: TcpStream, target: SocketAddr, fault: Arc<Mutex<Fault>>) {
    let mut client = client;
    let _ = client.set_nodelay(true);
    if current(&fault) == Fault::HalfOpen {
        // Read and drop whatever comes, answer nothing, close nothing.
        let mut sink = [0u8; 16 * 1024];
        while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {}
        return;
    }
    // A connect during a blackhole hangs until it ends (the client's own timeout decides).
    wait_out_the_dark(&fault).await;
    let Ok(mut server) = TcpStream::connect(target).await else { return };
    let _ = server.set_nodelay(true);
    let (mut up, mut down) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    // Bytes sent towards the dependency since a reset was armed, and the limit it was armed with.
    let mut armed: Option<(u64, u64)> = None;
    loop {
        // Bytes that were not waiting when the proxy looked (it waited for them) start a burst, which pays
        // the latency; bytes held back by a slow peer's backpressure do not.
        let looked = Instant::now();
        tokio::select! {
            read = client.read(&mut up) => {
                let Some(n) = bytes_read(read) else {
                    let _ = server.shutdown().await;
                    return;
                };
                if let Fault::ResetAfter(limit) = current(&fault) {
                    let sent = match armed {
                        Some((armed_with, sent)) if armed_with == limit => sent,
                        _ => 0,
                    };
                    if sent + n as u64 > limit {
                        // An abortive close on both sides: each peer sees a reset, not an orderly end. (A
                        // zero linger never blocks the drop, which is what tokio's deprecation warns of.)
                        #[allow(deprecated)]
                        {
                            let _ = client.set_linger(Some(Duration::ZERO));
                            let _ = server.set_linger(Some(Duration::ZERO));
                        }
                        return;
                    }
                    armed = Some((limit, sent + n as u64));
                }
                if delay(&fault, n, looked).await.is_err() || server.write_all(&up[..n]).await.is_err() {
                    return;
                }
            }
            read = server.read(&mut down) => {
                let Some(n) = bytes_read(read) else {
                    let _ = client.shutdown().await;
                    return;
                };
                if delay(&fault, n, looked).await.is_err() || client.write_all(&down[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// How many bytes a read gave; `None` at the end of the stream or on an error.
fn bytes_read(read: std::io::Result<usize>) -> Option<usize> {
    read.ok().filter(|n| *n > 0)
}

/// Holds `n` bytes as the fault of the moment says: until a blackhole ends, for a latency (at the start of
/// a burst: the proxy `looked` for them a while before they came), or for the time a bandwidth cap takes.
async fn delay(fault: &Mutex<Fault>, n: usize, looked: Instant) -> std::io::Result<()> {
    let burst = looked.elapsed() >= BURST_GAP;
    wait_out_the_dark(fault).await;
    match current(fault) {
        Fault::Latency(delay) if burst => tokio::time::sleep(delay).await,
        Fault::Bandwidth(per_second) => {
            tokio::time::sleep(Duration::from_secs_f64(n as f64 / per_second.max(1) as f64)).await;
        }
        _ => {}
    }
    Ok(())
}
