//! The resumable upload protocol as tables of exchanges, in the manner of tusd's handler tests: each case
//! starts a session, then sends `X-Goog-Upload-*` commands and checks each reply's status,
//! `x-goog-upload-status`, `x-goog-upload-size-received` and error message, then what was left behind.
//! In-process over [`crate::http::harness`]; `tests/integration/uploads.rs` proves the same wire against
//! the binary on every storage engine.

use axum::http::Method;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use crate::http::harness::{ALPHA_KEY, TestNode};

/// The bytes a case sends, by range of its file (`size` bytes, plus a few beyond, to overrun with).
#[derive(Clone, Copy)]
enum Bytes {
    None,
    Range(usize, usize),
    /// The range with its first byte changed: a resend that is not identical.
    Altered(usize, usize),
}

struct Exchange {
    command: &'static str,
    offset: Option<u64>,
    bytes: Bytes,
    status: u16,
    upload_status: &'static str,
    received: Option<u64>,
    /// A piece of the error message ("" when the reply is not an error).
    says: &'static str,
}

#[allow(clippy::too_many_arguments)]
const fn x(
    command: &'static str,
    offset: Option<u64>,
    bytes: Bytes,
    status: u16,
    upload_status: &'static str,
    received: Option<u64>,
    says: &'static str,
) -> Exchange {
    Exchange { command, offset, bytes, status, upload_status, received, says }
}

use Bytes::{Altered, None as NoBytes, Range};

struct Case {
    name: &'static str,
    size: usize,
    exchanges: &'static [Exchange],
    /// Whether the session is over at the end (finalized or cancelled): then nothing may stay staged.
    closed: bool,
}

const CASES: &[Case] = &[
    Case {
        name: "chunks in order, the last with finalize",
        size: 30,
        exchanges: &[
            x("upload", Some(0), Range(0, 10), 200, "active", Some(10), ""),
            x("upload", Some(10), Range(10, 20), 200, "active", Some(20), ""),
            x("upload, finalize", Some(20), Range(20, 30), 200, "final", Some(30), ""),
        ],
        closed: true,
    },
    Case {
        name: "a bare finalize after the last chunk, with no offset",
        size: 30,
        exchanges: &[
            x("upload", Some(0), Range(0, 30), 200, "active", Some(30), ""),
            x("finalize", None, NoBytes, 200, "final", Some(30), ""),
        ],
        closed: true,
    },
    Case {
        name: "an empty file in one exchange",
        size: 0,
        exchanges: &[x("upload, finalize", Some(0), NoBytes, 200, "final", Some(0), "")],
        closed: true,
    },
    Case {
        name: "the commands are a case-insensitive list in any order",
        size: 10,
        exchanges: &[
            x("QUERY", None, NoBytes, 200, "active", Some(0), ""),
            x("Finalize,Upload", Some(0), Range(0, 10), 200, "final", Some(10), ""),
        ],
        closed: true,
    },
    Case {
        name: "an offset ahead is refused with final, and the session stays resumable",
        size: 30,
        exchanges: &[
            x("upload", Some(0), Range(0, 10), 200, "active", Some(10), ""),
            x("upload", Some(25), Range(25, 30), 400, "final", None, "resume at offset 10"),
            x("query", None, NoBytes, 200, "active", Some(10), ""),
            x("upload, finalize", Some(10), Range(10, 30), 200, "final", Some(30), ""),
        ],
        closed: true,
    },
    Case {
        name: "an identical resend is acknowledged, a different or shorter one is a conflict",
        size: 30,
        exchanges: &[
            x("upload", Some(0), Range(0, 10), 200, "active", Some(10), ""),
            x("upload", Some(0), Range(0, 10), 200, "active", Some(10), ""),
            x("upload", Some(0), Altered(0, 10), 409, "final", None, ""),
            x("upload", Some(0), Range(0, 5), 409, "final", None, ""),
            x("query", None, NoBytes, 200, "active", Some(10), ""),
            x("upload, finalize", Some(10), Range(10, 30), 200, "final", Some(30), ""),
        ],
        closed: true,
    },
    Case {
        name: "a finalize whose reply was lost is answered again with the same file",
        size: 20,
        exchanges: &[
            x("upload", Some(0), Range(0, 10), 200, "active", Some(10), ""),
            x("upload, finalize", Some(10), Range(10, 20), 200, "final", Some(20), ""),
            x("upload, finalize", Some(10), Range(10, 20), 200, "final", Some(20), ""),
            x("query", None, NoBytes, 200, "final", Some(20), ""),
        ],
        closed: true,
    },
    Case {
        name: "a resend of the committed chunks with finalize finishes the upload",
        size: 20,
        exchanges: &[
            x("upload", Some(0), Range(0, 20), 200, "active", Some(20), ""),
            x("upload, finalize", Some(0), Range(0, 20), 200, "final", Some(20), ""),
        ],
        closed: true,
    },
    Case {
        name: "more bytes than declared commit nothing",
        size: 10,
        exchanges: &[
            x("upload, finalize", Some(0), Range(0, 11), 400, "final", None, "exceed the declared size of 10"),
            x("query", None, NoBytes, 200, "active", Some(0), ""),
            x("upload, finalize", Some(0), Range(0, 10), 200, "final", Some(10), ""),
        ],
        closed: true,
    },
    Case {
        name: "a finalize short of the declared size keeps the bytes it has",
        size: 10,
        exchanges: &[
            x(
                "upload, finalize",
                Some(0),
                Range(0, 4),
                400,
                "final",
                None,
                "finalize after 4 bytes, but the upload declared 10",
            ),
            x("query", None, NoBytes, 200, "active", Some(4), ""),
            x("upload", Some(4), Range(4, 10), 200, "active", Some(10), ""),
            x("finalize", None, NoBytes, 200, "final", Some(10), ""),
        ],
        closed: true,
    },
    Case {
        name: "a finalized session takes no new bytes",
        size: 10,
        exchanges: &[
            x("upload, finalize", Some(0), Range(0, 10), 200, "final", Some(10), ""),
            x("upload", Some(10), Range(0, 1), 400, "final", None, ""),
        ],
        closed: true,
    },
    Case {
        name: "cancel ends the session for every later command",
        size: 10,
        exchanges: &[
            x("upload", Some(0), Range(0, 5), 200, "active", Some(5), ""),
            x("cancel", None, NoBytes, 200, "cancelled", None, ""),
            x("query", None, NoBytes, 400, "cancelled", None, "cancelled"),
            x("upload", Some(5), Range(5, 10), 400, "cancelled", None, "cancelled"),
            x("finalize", None, NoBytes, 400, "cancelled", None, "cancelled"),
            x("cancel", None, NoBytes, 400, "cancelled", None, "cancelled"),
        ],
        closed: true,
    },
    Case {
        name: "malformed commands and offsets are refused and change nothing",
        size: 10,
        exchanges: &[
            x("upload, cancel", Some(0), Range(0, 10), 400, "final", None, "Unsupported X-Goog-Upload-Command"),
            x("start", None, NoBytes, 400, "final", None, "Unsupported X-Goog-Upload-Command"),
            x("upload", None, Range(0, 10), 400, "final", None, "Missing X-Goog-Upload-Offset"),
            x("query", None, NoBytes, 200, "active", Some(0), ""),
            x("upload, finalize", Some(0), Range(0, 10), 200, "final", Some(10), ""),
        ],
        closed: true,
    },
];

/// The file of a case: `size` bytes, then a few more to overrun the declared size with.
fn contents(size: usize) -> Vec<u8> {
    (0..size + 16).map(|i| (i * 31 % 251) as u8).collect()
}

async fn start(node: &TestNode, size: usize) -> String {
    let length = size.to_string();
    let reply = node
        .send(
            Method::POST,
            "/upload/v1beta/files",
            &[
                ("x-goog-api-key", ALPHA_KEY),
                ("x-goog-upload-protocol", "resumable"),
                ("x-goog-upload-command", "start"),
                ("x-goog-upload-header-content-length", &length),
                ("content-type", "application/json"),
            ],
            r#"{"file": {"displayName": "table"}}"#,
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("x-goog-upload-status"), Some("active"));
    reply.header("x-goog-upload-url").expect("an upload URL").to_owned()
}

#[tokio::test]
async fn the_upload_protocol_table() {
    let node = TestNode::start(&[]).await;
    for case in CASES {
        let file = contents(case.size);
        let url = start(&node, case.size).await;
        for (step, exchange) in case.exchanges.iter().enumerate() {
            let at = format!("{} — exchange {} ({})", case.name, step + 1, exchange.command);
            let body = match exchange.bytes {
                NoBytes => Vec::new(),
                Range(from, to) => file[from..to].to_vec(),
                Altered(from, to) => {
                    let mut bytes = file[from..to].to_vec();
                    bytes[0] ^= 0xff;
                    bytes
                }
            };
            let offset = exchange.offset.map(|o| o.to_string());
            let mut headers = vec![("x-goog-upload-command", exchange.command)];
            if let Some(offset) = &offset {
                headers.push(("x-goog-upload-offset", offset));
            }
            let reply = node.send(Method::POST, &url, &headers, body).await;
            assert_eq!(reply.status.as_u16(), exchange.status, "{at}: {reply:?}");
            assert_eq!(reply.header("x-goog-upload-status"), Some(exchange.upload_status), "{at}");
            let received = reply.header("x-goog-upload-size-received").map(|v| v.parse::<u64>().unwrap());
            assert_eq!(received, exchange.received, "{at}");
            if reply.status.is_success() {
                assert!(exchange.says.is_empty(), "{at}: expected an error");
            } else {
                let message = reply.message();
                assert!(message.contains(exchange.says), "{at}: {message}");
            }
            if exchange.upload_status == "final" && reply.status.is_success() {
                // Every finished upload is the declared bytes, whatever path the exchanges took.
                let resource = &reply.json()["file"];
                let digest = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&file[..case.size]));
                assert_eq!(resource["sha256Hash"], digest.as_str(), "{at}");
                assert_eq!(resource["sizeBytes"], case.size.to_string().as_str(), "{at}");
                assert_eq!(resource["state"], "ACTIVE", "{at}");
            }
        }
        if case.closed {
            assert_eq!(node.blobs_under("staging"), Vec::<std::path::PathBuf>::new(), "{}: staging left", case.name);
        }
    }
}

#[tokio::test]
async fn an_upload_url_that_was_never_handed_out_is_a_404_with_final() {
    let node = TestNode::start(&[]).await;
    for url in [
        "/upload/v1beta/files?upload_id=not-a-real-session&upload_protocol=resumable",
        "/upload/v1beta/files?upload_id=&upload_protocol=resumable",
    ] {
        for command in ["upload", "query", "cancel"] {
            let reply = node
                .send(Method::POST, url, &[("x-goog-upload-command", command), ("x-goog-upload-offset", "0")], "x")
                .await;
            assert_eq!(reply.header("x-goog-upload-status"), Some("final"), "{url} {command}");
            assert_eq!(reply.status, 404, "{url} {command}: {}", reply.message());
        }
    }
}
