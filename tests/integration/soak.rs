//! A soak: two nodes on one PostgreSQL and one S3 bucket, each reached through a fault proxy, while
//! clients upload (resumably, through either node) and import for `FILEGATE_SOAK_SECONDS` (120 by default)
//! and a schedule injects one fault after another, each followed by as long healthy. Every request is
//! counted by the fault it started under; at the end every finished file is read back and compared.
//! It prints the table docs/operations.md shows. `bench/soak.sh` runs it (it is `#[ignore]`d in the suite:
//! minutes long).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::faultproxy::{Fault, FaultProxy};
use crate::support::*;

/// The faults played, each for a window: (name, on PostgreSQL, on S3).
fn schedule() -> Vec<(&'static str, Fault, Fault)> {
    vec![
        ("PostgreSQL blackholed", Fault::Blackhole, Fault::None),
        ("PostgreSQL +200 ms each way", Fault::Latency(Duration::from_millis(200)), Fault::None),
        ("S3 resets mid-part (256 KiB)", Fault::None, Fault::ResetAfter(256 * 1024)),
        ("S3 +500 ms each way", Fault::None, Fault::Latency(Duration::from_millis(500))),
        ("S3 at 2 MiB/s", Fault::None, Fault::Bandwidth(2 * MIB as u64)),
        ("S3 blackholed", Fault::None, Fault::Blackhole),
    ]
}

/// What the requests started under one fault (or under none) saw.
#[derive(Default)]
struct Window {
    /// By HTTP status; 0 for no answer (the connection failed, or 60 s passed).
    by_status: BTreeMap<u16, u64>,
    /// What the requests without an answer met, by kind.
    unanswered: BTreeMap<String, u64>,
    worst: Duration,
    /// From the fault's end to the first chunk stored after it.
    recovery: Option<Duration>,
}

/// The fault of the moment (an index into the schedule), and the last one that ended, with when.
#[derive(Clone, Copy, Default)]
struct Moment {
    fault: Option<usize>,
    ended: Option<(usize, Instant)>,
}

struct Soak {
    nodes: Vec<Server>,
    now: Mutex<Moment>,
    windows: Mutex<BTreeMap<Option<usize>, Window>>,
    client: reqwest::Client,
}

impl Soak {
    /// Sends a request, counting its answer (or its lack of one) and time under the fault it started in.
    /// Like the SDKs, the clients here retry a request that got no answer.
    async fn send(&self, request: reqwest::RequestBuilder) -> Option<reqwest::Response> {
        let fault = self.now.lock().unwrap().fault;
        let started = Instant::now();
        let response = request.send().await;
        let took = started.elapsed();
        let mut windows = self.windows.lock().unwrap();
        let window = windows.entry(fault).or_default();
        window.worst = window.worst.max(took);
        match response {
            Ok(response) => {
                *window.by_status.entry(response.status().as_u16()).or_default() += 1;
                Some(response)
            }
            Err(e) => {
                *window.by_status.entry(0).or_default() += 1;
                let kind =
                    if e.is_timeout() { "no answer in 60 s".to_owned() } else { format!("{:?}", e.without_url()) };
                *window.unanswered.entry(kind.chars().take(160).collect()).or_default() += 1;
                None
            }
        }
    }

    fn stored_a_chunk(&self) {
        if let Some((fault, at)) = self.now.lock().unwrap().ended {
            let mut windows = self.windows.lock().unwrap();
            let window = windows.entry(Some(fault)).or_default();
            window.recovery.get_or_insert(at.elapsed());
        }
    }

    fn node(&self, turn: usize) -> &Server {
        &self.nodes[turn % self.nodes.len()]
    }

    /// Uploads `bytes` resumably, chunk by chunk through alternating nodes, resending on 503 and asking
    /// for the offset after anything else; returns the file's name.
    async fn upload(&self, bytes: &[u8], turn: &mut usize) -> String {
        let start = loop {
            *turn += 1;
            let node = self.node(*turn);
            let request = self
                .client
                .post(format!("{}/upload/v1beta/files", node.url))
                .header("x-goog-api-key", ALPHA_KEY)
                .header("x-goog-upload-protocol", "resumable")
                .header("x-goog-upload-command", "start")
                .header("x-goog-upload-header-content-length", bytes.len())
                .json(&json!({}));
            if let Some(reply) = self.send(request).await.filter(|r| r.status() == StatusCode::OK) {
                break header(&reply, "x-goog-upload-url").unwrap().to_owned();
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let path = start.split_once("/upload/").map(|(_, p)| format!("/upload/{p}")).unwrap();
        let mut offset = 0;
        loop {
            *turn += 1;
            let node = self.node(*turn);
            let end = (offset + CHUNK).min(bytes.len());
            let command = if end == bytes.len() { "upload, finalize" } else { "upload" };
            let request = self
                .client
                .post(format!("{}{path}", node.url))
                .header("x-goog-upload-command", command)
                .header("x-goog-upload-offset", offset)
                .body(bytes[offset..end].to_vec());
            let Some(reply) = self.send(request).await else {
                self.ask_offset(&path, node, &mut offset).await;
                continue;
            };
            match reply.status() {
                StatusCode::OK => {
                    self.stored_a_chunk();
                    if end == bytes.len() {
                        let file: serde_json::Value = reply.json().await.unwrap();
                        assert_eq!(file["file"]["sha256Hash"], json!(sha256_b64(bytes)), "the digest of what was sent");
                        return file["file"]["name"].as_str().unwrap().to_owned();
                    }
                    offset = end;
                }
                StatusCode::SERVICE_UNAVAILABLE => tokio::time::sleep(Duration::from_millis(250)).await,
                status => {
                    assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "a 500 for a dependency fault");
                    self.ask_offset(&path, node, &mut offset).await;
                }
            }
        }
    }

    /// As the SDKs do after an unexpected answer or none: asks where the upload stands.
    async fn ask_offset(&self, path: &str, node: &Server, offset: &mut usize) {
        let query = self.client.post(format!("{}{path}", node.url)).header("x-goog-upload-command", "query");
        if let Some(reply) = self.send(query).await {
            if let Some(received) = header(&reply, "x-goog-upload-size-received") {
                *offset = received.parse().unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    /// Reads `name` back through any node, retrying while it answers 503; whether the bytes are `bytes`.
    async fn read_back(&self, name: &str, bytes: &[u8], turn: &mut usize) -> bool {
        loop {
            *turn += 1;
            let node = self.node(*turn);
            let request = self
                .client
                .get(format!("{}/v1beta/{name}:download?alt=media", node.url))
                .header("x-goog-api-key", ALPHA_KEY);
            if let Some(reply) = self.send(request).await.filter(|r| r.status() == StatusCode::OK) {
                if let Ok(body) = reply.bytes().await {
                    return body.as_ref() == bytes;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

#[tokio::test]
#[ignore = "a soak of minutes: bench/soak.sh runs it"]
async fn soak_two_nodes_through_rotating_faults_lose_nothing() {
    let probe = Server::start();
    assert!(probe.can_have_siblings(), "the soak needs PostgreSQL and S3 (bench/soak.sh starts them)");
    drop(probe);
    let seconds: u64 = std::env::var("FILEGATE_SOAK_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(120);
    let pg = FaultProxy::start(crate::chaos::postgres_address());
    let s3 = FaultProxy::start(crate::chaos::s3_address());
    let a = Server::builder()
        .database_via(pg.addr)
        .env("AWS_ENDPOINT", format!("http://{}", s3.address()))
        .env("FILEGATE_IMPORT_ALLOW_CIDRS", "127.0.0.1/32")
        .env("FILEGATE_IMPORT_LEASE_SECONDS", 5)
        .env("FILEGATE_SWEEP_INTERVAL_SECONDS", 2)
        .start();
    let b = a.sibling();
    let soak = Arc::new(Soak {
        nodes: vec![a, b],
        now: Mutex::new(Moment::default()),
        windows: Mutex::new(BTreeMap::new()),
        client: reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap(),
    });
    let nginx = crate::sources::Nginx::start();
    let source = data(24_000_000, 7);
    let source_url = nginx.put("soak.bin", &source);

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let uploaders: Vec<_> = (0..4u64)
        .map(|worker| {
            let soak = soak.clone();
            tokio::spawn(async move {
                let (mut turn, mut done, mut lost, mut bytes_done) = (worker as usize, 0u64, 0u64, 0u64);
                while Instant::now() < deadline {
                    let size = MIB * (1 + (done as usize * 7 + worker as usize * 3) % 20) + 1234;
                    let bytes = data(size, worker * 1000 + done);
                    let name = soak.upload(&bytes, &mut turn).await;
                    if !soak.read_back(&name, &bytes, &mut turn).await {
                        lost += 1;
                    }
                    done += 1;
                    bytes_done += size as u64;
                }
                (done, bytes_done, lost)
            })
        })
        .collect();
    let importer = {
        let soak = soak.clone();
        tokio::spawn(async move {
            let (mut done, mut lost) = (0u64, 0u64);
            while Instant::now() < deadline {
                let node = soak.node(done as usize);
                let create = soak
                    .client
                    .post(format!("{}/v1/files", node.url))
                    .bearer_auth(ALPHA_KEY)
                    .json(&json!({"source_url": format!("{source_url}?rate=8m"), "model": "m"}));
                let created = soak.send(create).await;
                let Some(reply) =
                    created.filter(|r| r.status() == StatusCode::ACCEPTED || r.status() == StatusCode::OK)
                else {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                };
                let id = reply.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
                loop {
                    let view = soak.client.get(format!("{}/v1/files/{id}", soak.node(done as usize + 1).url));
                    let task: serde_json::Value = match soak.send(view.bearer_auth(ALPHA_KEY)).await {
                        Some(reply) if reply.status() == StatusCode::OK => reply.json().await.unwrap_or_default(),
                        _ => json!({}),
                    };
                    match task["status"].as_str() {
                        Some("ready") => {
                            lost += u64::from(task["sha256"] != json!(sha256_hex(&source)));
                            break;
                        }
                        Some("failed") => panic!("an import failed under a dependency fault: {task}"),
                        _ => tokio::time::sleep(Duration::from_millis(500)).await,
                    }
                }
                done += 1;
            }
            (done, lost)
        })
    };

    // The schedule: each fault for 10 s, then 10 s healthy, round and round until the deadline.
    let faults = schedule();
    let mut round = 0;
    while Instant::now() + Duration::from_secs(20) < deadline {
        let index = round % faults.len();
        let (_, on_pg, on_s3) = faults[index];
        *soak.now.lock().unwrap() = Moment { fault: Some(index), ended: None };
        pg.set(on_pg);
        s3.set(on_s3);
        tokio::time::sleep(Duration::from_secs(10)).await;
        pg.set(Fault::None);
        s3.set(Fault::None);
        *soak.now.lock().unwrap() = Moment { fault: None, ended: Some((index, Instant::now())) };
        tokio::time::sleep(Duration::from_secs(10)).await;
        round += 1;
    }
    let (mut files, mut bytes, mut lost) = (0, 0, 0);
    for uploader in uploaders {
        let (done, moved, gone) = uploader.await.unwrap();
        (files, bytes, lost) = (files + done, bytes + moved, lost + gone);
    }
    let (imports, imports_lost) = importer.await.unwrap();

    println!(
        "\n{seconds} s, {round} fault windows of 10 s (each followed by 10 s healthy); two nodes, 4 uploaders, 1 importer"
    );
    println!(
        "{files} files uploaded ({} MiB) and {imports} imports of 24 MB finished; bytes lost: {}\n",
        bytes / MIB as u64,
        lost + imports_lost
    );
    println!(
        "| fault (10 s) | requests | 2xx | 503 | other | no answer | worst latency | first chunk stored after it ended |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let windows = std::mem::take(&mut *soak.windows.lock().unwrap());
    for (key, window) in windows.iter() {
        let name = key.map_or("none (healthy)", |i| faults[i].0);
        let total: u64 = window.by_status.values().sum();
        let ok: u64 = window.by_status.iter().filter(|(s, _)| (200..300).contains(*s)).map(|(_, n)| n).sum();
        let unavailable = window.by_status.get(&503).copied().unwrap_or(0);
        let unanswered = window.by_status.get(&0).copied().unwrap_or(0);
        let recovery = window.recovery.map_or("-".to_owned(), |r| format!("{:.1} s", r.as_secs_f64()));
        println!(
            "| {name} | {total} | {ok} | {unavailable} | {} | {unanswered} | {:.1} s | {recovery} |",
            total - ok - unavailable - unanswered,
            window.worst.as_secs_f64()
        );
    }
    for (key, window) in windows.iter().filter(|(_, w)| !w.unanswered.is_empty()) {
        println!("\nwithout an answer, under {}: {:?}", key.map_or("no fault", |i| faults[i].0), window.unanswered);
    }
    // What the faults left behind that no transfer comes back for, as fsck finds it once the janitors have
    // swept (then repaired, for the after-test check).
    tokio::time::sleep(Duration::from_secs(6)).await;
    let fsck = |repair: bool| {
        let mut cmd = soak.nodes[0].filegate();
        cmd.args(["fsck", "--json", "--grace-seconds", "0"]);
        if repair {
            cmd.arg("--repair");
        }
        let out = cmd.output().unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let report = fsck(false);
    let mut left: BTreeMap<String, u64> = BTreeMap::new();
    for finding in report["findings"].as_array().unwrap() {
        *left.entry(finding["problem"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    println!("\nfsck after the soak: {} problem(s) {left:?}", report["problems"]);
    let repaired = fsck(true);
    assert_eq!(repaired["left"], 0, "fsck repairs what the faults left: {repaired}");
    assert!(
        !left.contains_key("missing_object") && !left.contains_key("wrong_size"),
        "no file lost its bytes: {report}"
    );
    assert_eq!(lost + imports_lost, 0, "bytes lost");
    assert!(windows.values().all(|w| !w.by_status.contains_key(&500)), "a 500 for a dependency fault");
    for node in &soak.nodes {
        assert!(!node.log().contains("status=500"), "a 500 in a node's log");
    }
}
