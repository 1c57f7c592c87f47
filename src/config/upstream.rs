//! Where model calls go (`FILEGATE_UPSTREAM` and its companions): Vertex AI, the Gemini API, or nowhere.

use std::collections::HashMap;
use std::time::Duration;

use std::path::PathBuf;

use secrecy::SecretString;

use super::{Problems, Setting, lenient, secret};
use crate::blob::BucketUrl;

#[derive(Debug, Clone, clap::Args)]
pub struct UpstreamArgs {
    /// Where model calls go: `vertex`, `gemini` or `off` (model routes answer 501 saying so).
    #[arg(long, env = "FILEGATE_UPSTREAM", default_value = "off", value_parser = lenient::<UpstreamKind>())]
    pub upstream: Setting<UpstreamKind>,
    /// The Google Cloud project of Vertex AI calls.
    #[arg(long, env = "FILEGATE_VERTEX_PROJECT")]
    pub vertex_project: Option<String>,
    /// The Vertex AI location.
    #[arg(long, env = "FILEGATE_VERTEX_LOCATION", default_value = "global")]
    pub vertex_location: String,
    /// Default `https://{location}-aiplatform.googleapis.com` (`https://aiplatform.googleapis.com` for global).
    #[arg(long, env = "FILEGATE_VERTEX_ENDPOINT")]
    pub vertex_endpoint: Option<String>,
    /// The Gemini API key filegate calls the Gemini API with (never a client's key).
    #[arg(long, env = "FILEGATE_GEMINI_API_KEY", hide_env_values = true)]
    pub gemini_api_key: Option<String>,
    /// A file holding FILEGATE_GEMINI_API_KEY (instead of the variable).
    #[arg(long, env = "FILEGATE_GEMINI_API_KEY_FILE")]
    pub gemini_api_key_file: Option<PathBuf>,
    #[arg(long, env = "FILEGATE_GEMINI_ENDPOINT", default_value = "https://generativelanguage.googleapis.com")]
    pub gemini_endpoint: String,
    /// A fixed bearer token for Vertex AI (development, tests); without it, Google's application-default
    /// credentials (GOOGLE_APPLICATION_CREDENTIALS, the metadata server, gcloud).
    #[arg(long, env = "FILEGATE_UPSTREAM_BEARER_TOKEN", hide_env_values = true)]
    pub upstream_bearer_token: Option<String>,
    /// A file holding FILEGATE_UPSTREAM_BEARER_TOKEN (instead of the variable).
    #[arg(long, env = "FILEGATE_UPSTREAM_BEARER_TOKEN_FILE")]
    pub upstream_bearer_token_file: Option<PathBuf>,
    /// `gs://BUCKET/PREFIX` where files that are not in Cloud Storage are copied (once) so Vertex AI can read
    /// them.
    #[arg(long, env = "FILEGATE_VERTEX_STAGING_BUCKET")]
    pub vertex_staging_bucket: Option<String>,
    /// The largest file sent inline (`inlineData`) rather than by reference.
    #[arg(long, env = "FILEGATE_INLINE_MAX_BYTES", default_value = "7340032", value_parser = lenient::<u64>())]
    pub inline_max_bytes: Setting<u64>,
    /// File references (`fileData` parts) one model call may carry; more are refused with 400 before any is
    /// looked up. Gemini reads at most 3 000 images per prompt.
    #[arg(long, env = "FILEGATE_MODEL_MAX_FILE_REFERENCES", default_value = "3000", value_parser = lenient::<usize>())]
    pub model_max_file_references: Setting<usize>,
    /// Comma-separated `alias=upstream-model` pairs.
    #[arg(long, env = "FILEGATE_MODEL_MAP", default_value = "")]
    pub model_map: String,
    /// An upstream that sends nothing for this long is given up on (there is no total limit: a long video
    /// prompt may stream for minutes).
    #[arg(long, env = "FILEGATE_UPSTREAM_IDLE_TIMEOUT_SECONDS", default_value = "300", value_parser = lenient::<u64>())]
    pub upstream_idle_timeout_seconds: Setting<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UpstreamKind {
    #[default]
    Off,
    Vertex,
    Gemini,
}

impl std::str::FromStr for UpstreamKind {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s.to_ascii_lowercase().as_str() {
            "off" => Ok(Self::Off),
            "vertex" => Ok(Self::Vertex),
            "gemini" => Ok(Self::Gemini),
            _ => Err(()),
        }
    }
}

impl super::setting::Described for UpstreamKind {
    const WHAT: &'static str = "vertex, gemini or off";
}

/// How Vertex AI calls authenticate.
#[derive(Clone)]
pub enum VertexAuth {
    Static(SecretString),
    ApplicationDefault,
}

impl std::fmt::Debug for VertexAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Static(_) => "Static(..)",
            Self::ApplicationDefault => "ApplicationDefault",
        })
    }
}

/// The validated upstream settings.
#[derive(Debug, Clone)]
pub enum Upstream {
    Off,
    Vertex { project: String, location: String, endpoint: String, auth: VertexAuth, staging: Option<BucketUrl> },
    Gemini { api_key: ApiKeySecret, endpoint: String },
}

/// An upstream API key: never printed, wiped from memory when dropped.
pub type ApiKeySecret = SecretString;

#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub upstream: Upstream,
    pub inline_max_bytes: u64,
    pub max_file_references: usize,
    /// alias → upstream model.
    pub model_map: HashMap<String, String>,
    pub idle_timeout: Duration,
}

/// An upstream's base URL: absolute `http(s)`, with a host, no query; a trailing slash dropped.
fn endpoint_url(url: &str, name: &str) -> Result<String, String> {
    let trimmed = url.trim().trim_end_matches('/');
    match url::Url::parse(trimmed) {
        Ok(parsed)
            if ["http", "https"].contains(&parsed.scheme())
                && parsed.host_str().is_some_and(|h| !h.is_empty())
                && parsed.query().is_none()
                && parsed.username().is_empty() =>
        {
            Ok(trimmed.to_owned())
        }
        _ => Err(format!("{name} \"{url}\" must be an absolute http:// or https:// URL (no query, no user)")),
    }
}

/// A secret sent as a header value must be one: visible ASCII, no line breaks.
fn header_safe(value: &str, name: &str) -> Result<(), String> {
    match value.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        true => Ok(()),
        false => Err(format!("{name} holds characters a header cannot carry (spaces, line breaks, non-ASCII)")),
    }
}

impl ModelConfig {
    /// The model settings, or `None` with their problems recorded.
    pub fn from_args(args: UpstreamArgs, problems: &mut Problems) -> Option<Self> {
        let gemini_api_key =
            secret(args.gemini_api_key, args.gemini_api_key_file.as_deref(), "FILEGATE_GEMINI_API_KEY", problems);
        let bearer = secret(
            args.upstream_bearer_token,
            args.upstream_bearer_token_file.as_deref(),
            "FILEGATE_UPSTREAM_BEARER_TOKEN",
            problems,
        );
        let upstream = match problems.take(args.upstream.get()) {
            None => None,
            Some(UpstreamKind::Off) => Some(Upstream::Off),
            Some(UpstreamKind::Vertex) => {
                let project = args.vertex_project.clone().filter(|p| !p.trim().is_empty());
                problems.check(project.is_some(), "FILEGATE_UPSTREAM=vertex needs FILEGATE_VERTEX_PROJECT");
                let location = args.vertex_location.trim().to_owned();
                problems.check(
                    !location.is_empty() && location.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
                    format!("FILEGATE_VERTEX_LOCATION \"{location}\" is not a location (global, us-central1, …)"),
                );
                let endpoint = match &args.vertex_endpoint {
                    Some(endpoint) => problems.take(endpoint_url(endpoint, "FILEGATE_VERTEX_ENDPOINT")),
                    None if location == "global" => Some("https://aiplatform.googleapis.com".into()),
                    None => Some(format!("https://{location}-aiplatform.googleapis.com")),
                };
                let auth = match bearer {
                    Some(token) if !token.trim().is_empty() => {
                        problems.take(header_safe(token.trim(), "FILEGATE_UPSTREAM_BEARER_TOKEN"));
                        VertexAuth::Static(token.trim().into())
                    }
                    _ => VertexAuth::ApplicationDefault,
                };
                let staging = match &args.vertex_staging_bucket {
                    None => Some(None),
                    Some(url) => match BucketUrl::parse(url) {
                        Some(bucket) if url.starts_with("gs://") => Some(Some(bucket)),
                        _ => {
                            problems
                                .push(format!("FILEGATE_VERTEX_STAGING_BUCKET \"{url}\" must be gs://BUCKET[/PREFIX]"));
                            None
                        }
                    },
                };
                match (project, staging, endpoint) {
                    (Some(project), Some(staging), Some(endpoint)) => {
                        Some(Upstream::Vertex { project, location, endpoint, auth, staging })
                    }
                    _ => None,
                }
            }
            Some(UpstreamKind::Gemini) => {
                let api_key = gemini_api_key.filter(|k| !k.trim().is_empty());
                problems.check(api_key.is_some(), "FILEGATE_UPSTREAM=gemini needs FILEGATE_GEMINI_API_KEY");
                if let Some(key) = &api_key {
                    problems.take(header_safe(key, "FILEGATE_GEMINI_API_KEY"));
                }
                let endpoint = problems.take(endpoint_url(&args.gemini_endpoint, "FILEGATE_GEMINI_ENDPOINT"));
                api_key.zip(endpoint).map(|(api_key, endpoint)| Upstream::Gemini { api_key: api_key.into(), endpoint })
            }
        };
        let mut model_map = HashMap::new();
        for pair in args.model_map.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some((alias, model)) => {
                    model_map.insert(alias.trim().to_owned(), model.trim().to_owned());
                }
                None => problems.push(format!("FILEGATE_MODEL_MAP entries must be alias=model, not \"{pair}\"")),
            }
        }
        let idle_timeout = Duration::from_secs(problems.at_least(&args.upstream_idle_timeout_seconds, 1));
        let max_file_references = problems.at_least(&args.model_max_file_references, 1);
        let inline_max_bytes = problems.value(&args.inline_max_bytes);
        Some(Self { upstream: upstream?, inline_max_bytes, max_file_references, model_map, idle_timeout })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        upstream: UpstreamArgs,
    }

    fn parse(args: &[&str]) -> Result<ModelConfig, Problems> {
        let cli = Cli::try_parse_from(std::iter::once("filegate").chain(args.iter().copied())).unwrap();
        let mut problems = Problems::default();
        let config = ModelConfig::from_args(cli.upstream, &mut problems);
        problems.into_result()?;
        Ok(config.unwrap())
    }

    #[test]
    fn vertex_endpoints_follow_the_location_and_settings_are_checked() {
        let global = parse(&["--upstream", "vertex", "--vertex-project", "p1"]).unwrap();
        assert!(
            matches!(&global.upstream, Upstream::Vertex { endpoint, .. } if endpoint == "https://aiplatform.googleapis.com")
        );
        let regional =
            parse(&["--upstream", "vertex", "--vertex-project", "p1", "--vertex-location", "europe-west4"]).unwrap();
        assert!(
            matches!(&regional.upstream, Upstream::Vertex { endpoint, .. } if endpoint == "https://europe-west4-aiplatform.googleapis.com")
        );
        assert!(parse(&["--upstream", "vertex"]).unwrap_err().to_string().contains("FILEGATE_VERTEX_PROJECT"));
        assert!(parse(&["--upstream", "gemini"]).unwrap_err().to_string().contains("FILEGATE_GEMINI_API_KEY"));
        assert!(
            parse(&["--upstream", "vertex", "--vertex-project", "p", "--vertex-staging-bucket", "s3://b"]).is_err()
        );
        let mapped = parse(&["--model-map", "fast = gemini-3-flash, pro=gemini-3-pro"]).unwrap();
        assert_eq!(mapped.model_map["fast"], "gemini-3-flash");
    }
}
