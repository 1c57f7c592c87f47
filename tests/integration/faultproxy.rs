//! A TCP proxy in front of a dependency (PostgreSQL, a bucket, the upstream, a receiver, an import
//! source) that plays the faults a network plays: added latency, a bandwidth cap, connections reset after
//! some bytes, a blackhole (packets go nowhere, nothing is closed), a half-open peer (it reads and never
//! answers). It runs on a thread and runtime of its own, so a test's own runtime (and its blocking waits)
//! never slows it, and faults apply to new and established connections alike, as a network's do.

use std::collections::VecDeque;
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
    /// Every byte arrives this much later, in each direction, as over a long path.
    Latency(Duration),
    /// At most this many bytes a second in each direction, per connection.
    Bandwidth(u64),
    /// Every connection is reset (RST) once this many more bytes went through it, either way — mid-body
    /// of an upload or of a download; new connections too.
    ResetAfter(u64),
    /// Nothing passes and nothing is closed: connections and new connects hang, as when a host vanishes.
    Blackhole,
    /// New connections are accepted and what they send is read, but nothing ever comes back.
    HalfOpen,
}

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
    let (mut up_buf, mut down_buf) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    // Bytes on their way to the dependency and back.
    let (mut up, mut down) = (Line::default(), Line::default());
    let mut armed = Armed::default();
    loop {
        if up.drained() && !up.shut {
            // The client finished sending: the dependency is told so, and its answer still comes back.
            let _ = server.shutdown().await;
            up.shut = true;
        }
        if down.drained() {
            let _ = client.shutdown().await;
            return;
        }
        let (up_due, down_due) = (up.next_due(), down.next_due());
        tokio::select! {
            read = client.read(&mut up_buf), if up.has_room() => {
                let Ok(n) = read else { return };
                if n == 0 {
                    up.ended = true;
                    continue;
                }
                if armed.passes(&fault, n) {
                    reset(&client, &server);
                    return;
                }
                up.push(current(&fault), &up_buf[..n]);
            }
            read = server.read(&mut down_buf), if down.has_room() => {
                let Ok(n) = read else { return };
                if n == 0 {
                    down.ended = true;
                    continue;
                }
                if armed.passes(&fault, n) {
                    reset(&client, &server);
                    return;
                }
                down.push(current(&fault), &down_buf[..n]);
            }
            () = sleep_until(up_due), if up_due.is_some() => {
                wait_out_the_dark(&fault).await;
                if server.write_all(&up.pop()).await.is_err() {
                    return;
                }
            }
            () = sleep_until(down_due), if down_due.is_some() => {
                wait_out_the_dark(&fault).await;
                if client.write_all(&down.pop()).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The bytes a connection passed since a reset was armed, and the limit it was armed with.
#[derive(Default)]
struct Armed(Option<(u64, u64)>);

impl Armed {
    /// Counts `n` more bytes; whether they go past a reset's limit.
    fn passes(&mut self, fault: &Mutex<Fault>, n: usize) -> bool {
        let Fault::ResetAfter(limit) = current(fault) else {
            self.0 = None;
            return false;
        };
        let passed = match self.0 {
            Some((armed_with, passed)) if armed_with == limit => passed,
            _ => 0,
        } + n as u64;
        self.0 = Some((limit, passed));
        passed > limit
    }
}

/// An abortive close on both sides: each peer sees a reset, not an orderly end. (A zero linger never
/// blocks the drop, which is what tokio's deprecation warns of.)
fn reset(client: &TcpStream, server: &TcpStream) {
    #[allow(deprecated)]
    {
        let _ = client.set_linger(Some(Duration::ZERO));
        let _ = server.set_linger(Some(Duration::ZERO));
    }
}

/// How many reads (of up to 16 KiB) a direction holds before it stops reading (backpressure to the
/// sender): enough for a fast sender over a long path.
const LINE_READS: usize = 1024;

/// The bytes on their way in one direction, each due when the fault of the moment they came said: a
/// latency delays every byte by that much (a delay line: a request sent on a new connection pays it as
/// much as one after a pause), a bandwidth cap spaces them out behind each other. Nothing overtakes.
#[derive(Default)]
struct Line {
    queue: VecDeque<(Instant, Vec<u8>)>,
    last_due: Option<Instant>,
    /// The sender finished (end of stream); once the queue is empty the receiver is told.
    ended: bool,
    /// The receiver was told.
    shut: bool,
}

impl Line {
    fn has_room(&self) -> bool {
        !self.ended && self.queue.len() < LINE_READS
    }

    fn drained(&self) -> bool {
        self.ended && self.queue.is_empty()
    }

    fn push(&mut self, fault: Fault, bytes: &[u8]) {
        let now = Instant::now();
        let mut due = match fault {
            Fault::Latency(delay) => now + delay,
            _ => now,
        };
        if let Fault::Bandwidth(per_second) = fault {
            let after = self.last_due.map_or(now, |last| last.max(now));
            due = after + Duration::from_secs_f64(bytes.len() as f64 / per_second.max(1) as f64);
        }
        let due = self.last_due.map_or(due, |last| last.max(due));
        self.last_due = Some(due);
        self.queue.push_back((due, bytes.to_vec()));
    }

    fn next_due(&self) -> Option<Instant> {
        self.queue.front().map(|(due, _)| *due)
    }

    fn pop(&mut self) -> Vec<u8> {
        self.queue.pop_front().map(|(_, bytes)| bytes).unwrap_or_default()
    }
}

/// Sleeps until `due` (the branch is off when there is nothing due).
async fn sleep_until(due: Option<Instant>) {
    if let Some(due) = due {
        tokio::time::sleep_until(due.into()).await;
    }
}
