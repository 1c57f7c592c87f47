//! `filegate upload`: the resumable protocol from the client side, in chunks, with the SHA-256 computed
//! while reading and checked against the server's, and resume after the process dies.
//!
//! Resume: once the server hands out an upload URL, it is kept in a small state file under the user's
//! cache directory (`$XDG_CACHE_HOME/filegate/uploads/`, else `~/.cache/…`), named by the file's identity
//! (server, absolute path, size, modification time and the chosen name, display name and type). Running the
//! same command again finds it, asks the server how much it has (`query`), hashes that much of the file
//! locally and sends the rest. A file changed since (size or mtime) is a new identity, so a new upload: bytes
//! of two versions are never spliced. The state file is removed once the server has the whole file.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

use futures_util::StreamExt as _;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use super::digest::{hash_prefix, sha256_hex_of};
use super::output::{Progress, print_json};
use super::private_files::{private_dir, write_private};
use super::remote::{CliError, CliResult, Exit, JsonBody as _, Remote, RemoteArgs, read_json};

const MIB: u64 = 1024 * 1024;
/// Attempts per chunk before giving up on a server that keeps failing (connection lost, 5xx, 429).
const ATTEMPTS: u32 = 5;

#[derive(Debug, clap::Args)]
pub struct UploadArgs {
    /// Files to upload.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// The file's name (`files/NAME` or `NAME`; default: the server picks one). One path only.
    #[arg(long)]
    pub name: Option<String>,
    /// Default: the file's name on disk.
    #[arg(long)]
    pub display_name: Option<String>,
    /// Default: guessed from the extension, else application/octet-stream.
    #[arg(long)]
    pub mime_type: Option<String>,
    /// Files uploaded at once.
    #[arg(long, short = 'j', default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    /// Bytes per request, in MiB; rounded up to a multiple of the granularity the server announces.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub chunk_size: u64,
    /// At most this many bytes per second per file (e.g. 500K, 4M); default unlimited.
    #[arg(long, value_parser = parse_rate)]
    pub limit_rate: Option<u64>,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

fn parse_rate(text: &str) -> Result<u64, String> {
    let (digits, unit) = text.trim().split_at(text.trim().trim_end_matches(|c: char| c.is_ascii_alphabetic()).len());
    let number: u64 = digits.parse().map_err(|_| format!("{text:?} is not a rate like 500K or 4M"))?;
    let scale = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1024,
        "M" | "MB" | "MIB" => MIB,
        "G" | "GB" | "GIB" => 1024 * MIB,
        _ => return Err(format!("{text:?}: the unit is K, M or G")),
    };
    Ok(number.saturating_mul(scale)).and_then(|r| if r == 0 { Err("the rate must be above 0".into()) } else { Ok(r) })
}

/// What one file's upload needs to know, shared by every job.
struct Job<'a> {
    remote: &'a Remote,
    args: &'a UploadArgs,
    progress: &'a Progress,
    state_dir: PathBuf,
}

pub async fn run(args: UploadArgs) -> CliResult<Exit> {
    if args.paths.len() > 1 && args.name.is_some() {
        return Err(CliError::usage("--name names one file: give one path with it"));
    }
    let remote = Remote::new(&args.remote)?;
    let progress = Progress::new(args.remote.json);
    let job = Job { remote: &remote, args: &args, progress: &progress, state_dir: state_dir()? };
    let results: Vec<(PathBuf, CliResult<Uploaded>)> = futures_util::stream::iter(&args.paths)
        .map(|path| {
            let job = &job;
            async move { (path.clone(), job.upload(path).await) }
        })
        .buffered(usize::from(args.jobs))
        .collect()
        .await;

    let mut worst = Exit::Success;
    let mut uploads = Vec::new();
    let mut errors = Vec::new();
    for (path, result) in results {
        match result {
            Ok(done) => {
                if !args.remote.json {
                    let resumed = if done.resumed_from > 0 {
                        format!(", resumed at {}", indicatif::HumanBytes(done.resumed_from))
                    } else {
                        String::new()
                    };
                    out!(
                        "{}  {}  ({}, sha256 {}{resumed})",
                        done.file["name"].as_str().unwrap_or("?"),
                        path.display(),
                        indicatif::HumanBytes(done.size),
                        if done.digest_checked { "checked" } else { "not reported by the server" },
                    );
                }
                uploads.push(
                    json!({"path": path, "resumed_from": done.resumed_from, "sha256": done.sha256, "file": done.file}),
                );
            }
            Err(err) => {
                if !args.remote.json {
                    eprintln!("{}: {err}", path.display());
                }
                errors.push(
                    json!({"path": path, "message": err.message, "hint": err.hint, "exit_code": err.exit as i32}),
                );
                worst = worst.max(err.exit);
            }
        }
    }
    if args.remote.json {
        print_json(&json!({"uploads": uploads, "errors": errors}));
    }
    Ok(worst)
}

struct Uploaded {
    file: Value,
    size: u64,
    sha256: String,
    resumed_from: u64,
    digest_checked: bool,
}

/// What the state file keeps: enough to reattach, and the identity it was made for (checked on reading,
/// in case two identities ever share a file name).
#[derive(Serialize, Deserialize, PartialEq)]
struct State {
    identity: String,
    upload_url: String,
    granularity: Option<u64>,
}

fn state_dir() -> CliResult<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .ok_or_else(|| CliError::failure("neither XDG_CACHE_HOME nor HOME is set: nowhere to keep resume state"))?;
    Ok(cache.join("filegate").join("uploads"))
}

impl Job<'_> {
    async fn upload(&self, path: &Path) -> CliResult<Uploaded> {
        let absolute = std::path::absolute(path)?;
        let meta =
            tokio::fs::metadata(&absolute).await.map_err(|e| CliError::failure(format!("{}: {e}", path.display())))?;
        if !meta.is_file() {
            return Err(CliError::usage(format!("{} is not a file", path.display())));
        }
        let size = meta.len();
        let mtime = meta.modified()?.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let display_name = self
            .args
            .display_name
            .clone()
            .unwrap_or_else(|| absolute.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned()));
        let mime_type = self.args.mime_type.clone().unwrap_or_else(|| {
            mime_guess::from_path(&absolute).first_raw().unwrap_or("application/octet-stream").to_owned()
        });
        let identity = serde_json::to_string(&json!([
            self.remote.base(),
            absolute,
            size,
            mtime.to_string(),
            self.args.name,
            display_name,
            mime_type
        ]))
        .expect("serializable");
        let state_path =
            self.state_dir.join(format!("{}.json", &hex::encode(Sha256::digest(identity.as_bytes()))[..32]));

        let bar = self.progress.bytes(&display_name, size);
        let mut file = tokio::fs::File::open(&absolute).await?;
        let (upload_url, mut offset, granularity) = match self.reattach(&state_path, &identity).await? {
            Reattached::Done(resource) => {
                let hasher = hash_prefix(&mut file, size).await?;
                return finished(&bar, &state_path, resource, size, hasher, size);
            }
            Reattached::At(state, offset) => (state.upload_url, offset, state.granularity),
            Reattached::Fresh => {
                let (upload_url, granularity) = self.start(size, &display_name, &mime_type).await?;
                save_state(&state_path, &State { identity, upload_url: upload_url.clone(), granularity })?;
                (upload_url, 0, granularity)
            }
        };
        let resumed_from = offset;
        let mut hasher = hash_prefix(&mut file, offset).await?;
        bar.set_position(offset);

        let chunk = round_up(self.args.chunk_size * MIB, granularity.unwrap_or(1));
        let started = Instant::now();
        let mut attempts = 0;
        loop {
            let len = chunk.min(size - offset);
            let last = offset + len >= size;
            let mut buffer = vec![0; usize::try_from(len).expect("a chunk fits in memory")];
            file.seek(std::io::SeekFrom::Start(offset)).await?;
            file.read_exact(&mut buffer).await?;
            let buffer = bytes::Bytes::from(buffer);
            if let Some(rate) = self.args.limit_rate {
                let due = Duration::from_secs_f64((offset - resumed_from) as f64 / rate as f64);
                tokio::time::sleep(due.saturating_sub(started.elapsed())).await;
            }
            let command = if last { "upload, finalize" } else { "upload" };
            let request = self
                .remote
                .request(Method::POST, &upload_url)
                .header("X-Goog-Upload-Command", command)
                .header("X-Goog-Upload-Offset", offset)
                .body(buffer.clone());
            match self.remote.send_any(request).await {
                Ok(response) if response.status().is_success() => {
                    attempts = 0;
                    hasher.update(&buffer);
                    offset += len;
                    bar.set_position(offset);
                    if last {
                        let body = read_json(response).await?;
                        return finished(&bar, &state_path, body["file"].clone(), size, hasher, resumed_from);
                    }
                }
                Ok(response) if !is_transient(response.status()) => {
                    let err = CliError::from_reply(response).await;
                    bar.abandon();
                    if err.exit == Exit::NotFound || err.message.contains("cancel") {
                        let _ = std::fs::remove_file(&state_path);
                    }
                    return Err(err);
                }
                failed => {
                    attempts += 1;
                    let err = match failed {
                        Ok(response) => CliError::from_reply(response).await,
                        Err(err) => err,
                    };
                    if attempts >= ATTEMPTS {
                        bar.abandon();
                        return Err(err.with_hint("run the same command again to resume from what the server has"));
                    }
                    self.progress.println(&format!("{display_name}: {} (retrying)", err.message));
                    tokio::time::sleep(Duration::from_secs(1 << attempts.min(4))).await;
                    match self.query(&upload_url).await? {
                        Queried::Final(resource) => {
                            let hasher = hash_prefix(&mut file, size).await?;
                            return finished(&bar, &state_path, resource, size, hasher, resumed_from);
                        }
                        Queried::Active(received) if received != offset => {
                            offset = received;
                            hasher = hash_prefix(&mut file, offset).await?;
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    /// Starts a session: the upload URL, and the granularity chunks must be multiples of.
    async fn start(&self, size: u64, display_name: &str, mime_type: &str) -> CliResult<(String, Option<u64>)> {
        let mut file = json!({"displayName": display_name});
        if let Some(name) = &self.args.name {
            file["name"] = json!(if name.starts_with("files/") { name.clone() } else { format!("files/{name}") });
        }
        let request = self
            .remote
            .request(Method::POST, "/upload/v1beta/files")
            .header("X-Goog-Upload-Protocol", "resumable")
            .header("X-Goog-Upload-Command", "start")
            .header("X-Goog-Upload-Header-Content-Length", size)
            .header("X-Goog-Upload-Header-Content-Type", mime_type)
            .json_body(&json!({"file": file}));
        let response = self.remote.send(request).await?;
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let url = header("x-goog-upload-url")
            .ok_or_else(|| CliError::failure("the server started the upload but sent no X-Goog-Upload-URL"))?;
        Ok((url, header("x-goog-upload-chunk-granularity").and_then(|g| g.parse().ok()).filter(|g| *g > 0)))
    }

    /// A saved session for this identity, and where the server has it.
    async fn reattach(&self, state_path: &Path, identity: &str) -> CliResult<Reattached> {
        let Ok(text) = std::fs::read_to_string(state_path) else { return Ok(Reattached::Fresh) };
        let Ok(state) = serde_json::from_str::<State>(&text) else { return Ok(Reattached::Fresh) };
        if state.identity != identity {
            return Ok(Reattached::Fresh);
        }
        Ok(match self.query(&state.upload_url).await? {
            Queried::Active(received) => Reattached::At(state, received),
            Queried::Final(file) => Reattached::Done(file),
            Queried::Gone => {
                let _ = std::fs::remove_file(state_path);
                Reattached::Fresh
            }
        })
    }

    async fn query(&self, upload_url: &str) -> CliResult<Queried> {
        let request = self.remote.request(Method::POST, upload_url).header("X-Goog-Upload-Command", "query");
        let response = self.remote.send_any(request).await?;
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let status = header("x-goog-upload-status").unwrap_or_default();
        let received = header("x-goog-upload-size-received").and_then(|r| r.parse().ok());
        if !response.status().is_success() {
            // An unknown, expired or cancelled session: start over. Anything else (a refused key, the server
            // down) is the user's to see.
            if matches!(response.status().as_u16(), 400 | 404 | 410) {
                return Ok(Queried::Gone);
            }
            return Err(CliError::from_reply(response).await);
        }
        match (status.as_str(), received) {
            ("active", Some(received)) => Ok(Queried::Active(received)),
            ("final", _) => {
                let body = read_json(response).await?;
                Ok(if body["file"].is_object() { Queried::Final(body["file"].clone()) } else { Queried::Gone })
            }
            _ => Ok(Queried::Gone),
        }
    }
}

/// The server has the whole file: the bar goes, the resume state goes, and the digest is checked.
fn finished(
    bar: &indicatif::ProgressBar,
    state_path: &Path,
    file: Value,
    size: u64,
    hasher: Sha256,
    resumed_from: u64,
) -> CliResult<Uploaded> {
    bar.finish_and_clear();
    let _ = std::fs::remove_file(state_path);
    let sha256 = hex::encode(hasher.finalize());
    let reported = sha256_hex_of(&file);
    if let Some(reported) = &reported
        && *reported != sha256
    {
        return Err(CliError::new(
            Exit::Failed,
            format!("the server stored a different SHA-256 ({reported}) than the file's ({sha256})"),
        )
        .with_hint("the file may have changed while it was read; delete the upload (`filegate rm`) and upload again"));
    }
    Ok(Uploaded { file, size, sha256, resumed_from, digest_checked: reported.is_some() })
}

enum Reattached {
    Fresh,
    At(State, u64),
    Done(Value),
}

enum Queried {
    Active(u64),
    Final(Value),
    Gone,
}

fn is_transient(status: reqwest::StatusCode) -> bool {
    status.is_server_error() || matches!(status.as_u16(), 408 | 429)
}

fn round_up(value: u64, multiple: u64) -> u64 {
    value.div_ceil(multiple) * multiple
}

/// Written whole or not at all: a crash while saving leaves the old state or none, never half a file.
/// Readable by the user only (mode 0600 in a 0700 directory): the upload URL in it is enough to write,
/// finish or cancel the upload.
fn save_state(path: &Path, state: &State) -> CliResult<()> {
    private_dir(path.parent().expect("the state file is in a directory"))?;
    write_private(path, &serde_json::to_vec(state).expect("serializable"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_like_curl_s() {
        assert_eq!(parse_rate("500K"), Ok(500 * 1024));
        assert_eq!(parse_rate("4m"), Ok(4 * MIB));
        assert_eq!(parse_rate("100"), Ok(100));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("4X").is_err());
        assert!(parse_rate("fast").is_err());
    }

    #[test]
    fn chunks_are_multiples_of_the_granularity() {
        assert_eq!(round_up(MIB, 8 * MIB), 8 * MIB);
        assert_eq!(round_up(16 * MIB, 8 * MIB), 16 * MIB);
        assert_eq!(round_up(3 * MIB, 1), 3 * MIB);
    }
}
