//! `filegate ls`, `info`, `rm` and `download`: the files of the key's project.

use std::path::{Path, PathBuf};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

use super::digest::{hash_prefix, sha256_hex_of};
use super::output::{Progress, emit, print_json, size_of, table};
use super::private_files::open_partial;
use super::remote::{CliError, CliResult, Exit, Remote, RemoteArgs, file_path};

#[derive(Debug, clap::Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// `files/ID`, `ID` or `qfile-ID` (an import, with its progress and error).
    pub id: String,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// `files/ID`, `ID` or `qfile-ID` (deleting an import also stops its fetch).
    #[arg(required = true)]
    pub ids: Vec<String>,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Debug, clap::Args)]
pub struct DownloadArgs {
    /// `files/ID`, `ID` or `qfile-ID`.
    pub id: String,
    /// Where to write (`-` for stdout). Default: the file's display name (else its id) in the current
    /// directory. Bytes arrive in `PATH.part`, renamed once their SHA-256 is checked; a `.part` left by an
    /// interrupted download is continued with `Range`.
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
    /// Replace PATH if it exists.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

pub async fn ls(args: LsArgs) -> CliResult<Exit> {
    let remote = Remote::new(&args.remote)?;
    let mut files = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut request = remote.request(Method::GET, "/v1beta/files").query(&[("pageSize", "100")]);
        if let Some(token) = &token {
            request = request.query(&[("pageToken", token)]);
        }
        let page = remote.json(request).await?;
        files.extend(page["files"].as_array().cloned().unwrap_or_default());
        match page["nextPageToken"].as_str().filter(|t| !t.is_empty()) {
            Some(next) => token = Some(next.to_owned()),
            None => break,
        }
    }
    if args.remote.json {
        print_json(&json!({"files": files}));
    } else {
        let rows: Vec<Vec<String>> = files
            .iter()
            .map(|f| {
                let text = |key: &str| f[key].as_str().unwrap_or("-").to_owned();
                vec![
                    text("name"),
                    text("displayName"),
                    size_of(f),
                    text("mimeType"),
                    text("state"),
                    text("expirationTime"),
                ]
            })
            .collect();
        emit(&table(&["NAME", "DISPLAY NAME", "SIZE", "TYPE", "STATE", "EXPIRES"], &rows));
    }
    Ok(Exit::Success)
}

pub async fn info(args: InfoArgs) -> CliResult<Exit> {
    let remote = Remote::new(&args.remote)?;
    let file = remote.json(remote.request(Method::GET, &file_path(&args.id)?)).await?;
    if args.remote.json {
        print_json(&file);
    } else if let Some(object) = file.as_object() {
        let width = object.keys().map(String::len).max().unwrap_or(0);
        for (key, value) in object {
            let shown = match value {
                Value::String(s) => s.clone(),
                Value::Null => "-".into(),
                other => other.to_string(),
            };
            out!("{key:<width$}  {shown}");
        }
    }
    Ok(Exit::Success)
}

pub async fn rm(args: RmArgs) -> CliResult<Exit> {
    let remote = Remote::new(&args.remote)?;
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    let mut exit = Exit::Success;
    for id in &args.ids {
        let result = match file_path(id) {
            Ok(path) => remote.send(remote.request(Method::DELETE, &path)).await.map(drop),
            Err(err) => Err(err),
        };
        match result {
            Ok(()) => {
                if !args.remote.json {
                    out!("deleted {id}");
                }
                deleted.push(id.clone());
            }
            Err(err) => {
                if !args.remote.json {
                    eprintln!("{id}: {err}");
                }
                exit = exit.max(err.exit);
                errors.push(json!({"id": id, "message": err.message, "exit_code": err.exit as i32}));
            }
        }
    }
    if args.remote.json {
        print_json(&json!({"deleted": deleted, "errors": errors}));
    }
    Ok(exit)
}

pub async fn download(args: DownloadArgs) -> CliResult<Exit> {
    let remote = Remote::new(&args.remote)?;
    let path = file_path(&args.id)?;
    // The Gemini view has the size and digest, also for an import (`qfile-ID` is `files/ID` there).
    let gemini_path = path.replace("/v1/files/qfile-", "/v1beta/files/");
    let file = remote.json(remote.request(Method::GET, &gemini_path)).await?;
    let size: u64 = file["sizeBytes"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
    let expected = sha256_hex_of(&file);
    let media = remote.request(Method::GET, &format!("{gemini_path}:download")).query(&[("alt", "media")]);

    if args.output.as_deref() == Some(Path::new("-")) {
        let mut response = remote.send(media).await?;
        let mut stdout = tokio::io::stdout();
        while let Some(piece) = response.chunk().await.map_err(|e| CliError::failure(format!("download: {e}")))? {
            stdout.write_all(&piece).await?;
        }
        stdout.flush().await?;
        return Ok(Exit::Success);
    }

    let target = args.output.clone().unwrap_or_else(|| default_name(&file));
    if target.exists() && !args.force {
        return Err(CliError::usage(format!("{} exists; --force replaces it", target.display())));
    }
    let mut part_name = target.clone().into_os_string();
    part_name.push(".part");
    let part = PathBuf::from(part_name);
    let mut out = tokio::fs::File::from_std(open_partial(&part)?);
    let mut have = out.metadata().await?.len();
    if have > size {
        out.set_len(0).await?;
        have = 0;
    }
    let mut hasher = hash_prefix(&mut out, have).await?;

    let progress = Progress::new(args.remote.json);
    let bar = progress.bytes(file["displayName"].as_str().unwrap_or(&args.id), size);
    bar.set_position(have);
    let mut response = if have < size || size == 0 {
        let request = if have > 0 { media.header("Range", format!("bytes={have}-")) } else { media };
        let response = remote.send(request).await?;
        if have > 0 && response.status() != StatusCode::PARTIAL_CONTENT {
            // The server sent the whole file: start the part over.
            out.set_len(0).await?;
            hasher = Sha256::new();
            bar.set_position(0);
        }
        Some(response)
    } else {
        None
    };
    let resumed_from =
        if response.as_ref().is_some_and(|r| r.status() == StatusCode::PARTIAL_CONTENT) { have } else { 0 };
    if let Some(response) = response.as_mut() {
        while let Some(piece) = response.chunk().await.map_err(|e| {
            CliError::failure(format!("download interrupted: {e}"))
                .with_hint("run the same command again: it continues from the bytes already in the .part file")
        })? {
            out.write_all(&piece).await?;
            hasher.update(&piece);
            bar.inc(piece.len() as u64);
        }
    }
    out.sync_all().await?;
    bar.finish_and_clear();
    let written = out.metadata().await?.len();
    drop(out);
    let sha256 = hex::encode(hasher.finalize());
    if written != size || expected.as_ref().is_some_and(|e| *e != sha256) {
        let _ = tokio::fs::remove_file(&part).await;
        return Err(CliError::new(
            Exit::Failed,
            format!(
                "the bytes received ({written} B, sha256 {sha256}) are not the file ({size} B, sha256 {expected:?})"
            ),
        )
        .with_hint("the partial download was removed; run the command again"));
    }
    tokio::fs::rename(&part, &target).await?;
    if args.remote.json {
        print_json(
            &json!({"path": target, "bytes": written, "sha256": sha256, "resumed_from": resumed_from, "file": file}),
        );
    } else {
        out!("{}  {}  ({}, sha256 checked)", file["name"].as_str().unwrap_or("?"), target.display(), size_of(&file));
    }
    Ok(Exit::Success)
}

/// The display name's last path component when it is a usable file name, else the id.
fn default_name(file: &Value) -> PathBuf {
    let display = file["displayName"].as_str().unwrap_or("");
    let base = display.rsplit(['/', '\\']).next().unwrap_or("");
    if !base.is_empty() && base != "." && base != ".." && !base.starts_with('.') {
        return PathBuf::from(base);
    }
    PathBuf::from(file["name"].as_str().unwrap_or("download").trim_start_matches("files/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downloads_are_named_safely() {
        assert_eq!(default_name(&json!({"name": "files/abc", "displayName": "talk.mp4"})), PathBuf::from("talk.mp4"));
        assert_eq!(
            default_name(&json!({"name": "files/abc", "displayName": "../../etc/passwd"})),
            PathBuf::from("passwd")
        );
        assert_eq!(default_name(&json!({"name": "files/abc", "displayName": ".bashrc"})), PathBuf::from("abc"));
        assert_eq!(default_name(&json!({"name": "files/abc"})), PathBuf::from("abc"));
    }
}
