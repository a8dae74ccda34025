//! `agenthook send`: the sender simulator. Signs a payload exactly as the chosen
//! sender would (its headers, a fresh timestamp and id) with the signing functions
//! that sit beside each scheme's verifier, then POSTs it to the host, or prints a
//! curl command that would.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use agenthook::config::{
    CloudEventsAuth, Config, HmacConfig, Locator, Scheme, Secret, SignatureEncoding, SourceConfig,
};
use agenthook::ingress::{self, Outgoing};

#[derive(Debug, Args)]
pub struct SendArgs {
    /// The source to send to; the URL defaults to http://127.0.0.1:8080/hooks/SOURCE.
    #[arg(long)]
    source: String,
    /// The sender to imitate: standard-webhooks, stripe, github, slack, shopify,
    /// hmac-sha256, bearer, basic, cloudevents, twilio, discord, pagerduty, linear, a2a
    /// or mcp-events. Not needed with --config.
    #[arg(long)]
    scheme: Option<Scheme>,
    /// The signing secret: literal, env:VAR or file:PATH. For standard-webhooks,
    /// whsec_... signs v1 (HMAC) and whsk_... (a private key) signs v1a (Ed25519);
    /// for discord, the application's Ed25519 private key seed (64 hex digits); for
    /// bearer, a2a and cloudevents (bearer auth) the token; for basic, user:password.
    #[arg(long, env = "AGENTHOOK_SEND_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Take the scheme, secret (the first) and hmac-sha256 settings from this host
    /// config's [sources.SOURCE].
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The event type, put where the sender puts it (a header or the JSON body).
    #[arg(long = "type")]
    event_type: Option<String>,
    /// The event id, put where the sender puts it; default: a fresh one.
    #[arg(long)]
    id: Option<String>,
    /// Where to POST.
    #[arg(long)]
    url: Option<String>,
    /// Print a curl command with the signed headers instead of sending.
    #[arg(long)]
    print: bool,
    /// Sign with this Unix time instead of now (to try the tolerance window).
    #[arg(long)]
    timestamp: Option<i64>,
    /// cloudevents: how the sender authenticates (as `auth` in the source's config).
    #[arg(long, value_parser = ["bearer", "basic", "standard-webhooks"])]
    auth: Option<String>,
    /// twilio: the scheme and host Twilio calls (as `public_url`); default: --url's.
    #[arg(long)]
    public_url: Option<String>,
    #[command(flatten)]
    hmac: HmacArgs,
    /// The payload, exactly as it is sent: a file, or - for stdin.
    file: PathBuf,
}

/// The `hmac-sha256` settings, as in `[sources.NAME]`.
#[derive(Debug, Args)]
#[command(next_help_heading = "hmac-sha256 (as in the source's config)")]
struct HmacArgs {
    #[arg(long)]
    signature_header: Option<String>,
    #[arg(long)]
    signature_prefix: Option<String>,
    #[arg(long, value_parser = ["hex", "base64"])]
    signature_encoding: Option<String>,
    #[arg(long)]
    timestamp_header: Option<String>,
    #[arg(long)]
    signed_payload: Option<String>,
    #[arg(long, conflicts_with = "id_pointer")]
    id_header: Option<String>,
    #[arg(long)]
    id_pointer: Option<String>,
    #[arg(long, conflicts_with = "type_pointer")]
    type_header: Option<String>,
    #[arg(long)]
    type_pointer: Option<String>,
}

impl HmacArgs {
    fn any(&self) -> bool {
        self.signature_header.is_some()
            || self.signature_prefix.is_some()
            || self.signature_encoding.is_some()
            || self.timestamp_header.is_some()
            || self.signed_payload.is_some()
            || self.id_header.is_some()
            || self.id_pointer.is_some()
            || self.type_header.is_some()
            || self.type_pointer.is_some()
    }

    /// Apply the flags over `base` (the config's settings, or the defaults).
    fn apply(&self, mut base: HmacConfig) -> HmacConfig {
        let locator = |header: &Option<String>, pointer: &Option<String>| match (header, pointer) {
            (Some(h), _) => Some(Locator::Header(h.clone())),
            (None, Some(p)) => Some(Locator::Pointer(p.clone())),
            (None, None) => None,
        };
        if let Some(h) = &self.signature_header {
            base.signature_header = h.clone();
        }
        if let Some(p) = &self.signature_prefix {
            base.signature_prefix = p.clone();
        }
        if let Some(e) = &self.signature_encoding {
            base.signature_encoding = if e == "base64" {
                SignatureEncoding::Base64
            } else {
                SignatureEncoding::Hex
            };
        }
        if let Some(h) = &self.timestamp_header {
            base.timestamp_header = Some(h.clone());
        }
        if let Some(t) = &self.signed_payload {
            base.signed_payload = t.clone();
        }
        if let Some(id) = locator(&self.id_header, &self.id_pointer) {
            base.id = Some(id);
        }
        if let Some(t) = locator(&self.type_header, &self.type_pointer) {
            base.event_type = Some(t);
        }
        base
    }
}

pub async fn run(args: SendArgs) -> anyhow::Result<()> {
    let (source, secret) = source_and_secret(&args)?;
    let body = read_payload(&args.file)?;
    let timestamp = match args.timestamp {
        Some(t) => t,
        None => (agenthook::clock::now_ms() / 1000) as i64,
    };
    let out = Outgoing {
        event_id: args.id.as_deref(),
        event_type: args.event_type.as_deref(),
        timestamp,
        body: &body,
    };
    let signed = ingress::sign(&source, &secret, &out)?;
    let url = args
        .url
        .clone()
        .unwrap_or_else(|| format!("http://127.0.0.1:8080/hooks/{}", args.source));

    if args.print {
        println!("curl -sS -X POST {} \\", shell_quote(&url));
        for (k, v) in &signed.headers {
            println!("  -H {} \\", shell_quote(&format!("{k}: {v}")));
        }
        let from_file = args.file != Path::new("-") && signed.body == body;
        if from_file {
            println!(
                "  --data-binary {}",
                shell_quote(&format!("@{}", args.file.display()))
            );
        } else {
            let text = std::str::from_utf8(&signed.body)
                .ok()
                .filter(|t| !t.contains('\0'))
                .ok_or_else(|| anyhow!("the payload is binary: give it as a file, not stdin"))?;
            println!("  --data-binary {}", shell_quote(text));
        }
        return Ok(());
    }

    if !url.starts_with("http://") {
        bail!("`send` speaks plain HTTP to the host; for {url} use --print and curl");
    }
    let mut req = http::Request::post(&url);
    for (k, v) in &signed.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req
        .body(Full::new(Bytes::from(signed.body)))
        .with_context(|| format!("cannot build a request for {url}"))?;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let resp = client
        .request(req)
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = resp.status();
    let answer = resp.into_body().collect().await?.to_bytes();
    println!("{status}");
    println!("{}", String::from_utf8_lossy(&answer));
    if !status.is_success() {
        bail!("the host answered {status}");
    }
    Ok(())
}

/// The source to sign for: from `--config` (flags override), or from the flags alone.
fn source_and_secret(args: &SendArgs) -> anyhow::Result<(SourceConfig, Secret)> {
    let from_config = match &args.config {
        Some(path) => {
            let config = Config::load(path)?;
            let source =
                config.sources.get(&args.source).cloned().ok_or_else(|| {
                    anyhow!("{} has no [sources.{}]", path.display(), args.source)
                })?;
            // The host checks secrets and schemas when it starts; check this source's
            // the same way, so a bad one is reported as the config error it is.
            ingress::validate_source(&source).map_err(|e| anyhow!("{e}"))?;
            Some(source)
        }
        None => None,
    };
    let scheme = match (args.scheme, &from_config) {
        (Some(s), _) => s,
        (None, Some(source)) => source.scheme,
        (None, None) => bail!("pass --scheme (or --config with the host's config)"),
    };
    let secret = match (&args.secret, &from_config) {
        (Some(spec), _) => Secret::resolve(spec, "--secret").map_err(|e| anyhow!("{e}"))?,
        (None, Some(source)) => source
            .secrets
            .first()
            .cloned()
            .ok_or_else(|| anyhow!("the source has no secret"))?,
        (None, None) => bail!("pass --secret (literal, env:VAR or file:PATH)"),
    };
    let mut source = match from_config {
        Some(source) if source.scheme == scheme => source,
        _ => SourceConfig::new(&args.source, scheme, vec![secret.clone()]),
    };
    apply_standard(args, &mut source)?;
    if scheme == Scheme::HmacSha256 {
        let base = match source.hmac.take() {
            Some(h) if args.config.is_some() => h,
            _ => {
                let header = args.hmac.signature_header.clone().ok_or_else(|| {
                    anyhow!("--scheme hmac-sha256 needs --signature-header (or --config)")
                })?;
                HmacConfig::new(header)
            }
        };
        source.hmac = Some(args.hmac.apply(base));
        // The same checks as the host's config load (template, header names).
        ingress::validate_source(&source).map_err(|e| anyhow!("{e}"))?;
    } else if scheme.locates_id_and_type() {
        let h = &args.hmac;
        if h.signature_header.is_some()
            || h.signature_prefix.is_some()
            || h.signature_encoding.is_some()
            || h.timestamp_header.is_some()
            || h.signed_payload.is_some()
        {
            bail!(
                "the --signature-*/--timestamp-header/--signed-payload options are for --scheme hmac-sha256"
            );
        }
        let base = HmacConfig {
            id: source.standard.id.take(),
            event_type: source.standard.event_type.take(),
            ..HmacConfig::new("unused")
        };
        let located = args.hmac.apply(base);
        source.standard.id = located.id;
        source.standard.event_type = located.event_type;
        ingress::validate_source(&source).map_err(|e| anyhow!("{e}"))?;
    } else if args.hmac.any() {
        bail!(
            "the --signature-*/--timestamp-header/--signed-payload options are for --scheme hmac-sha256, --id-*/--type-* for hmac-sha256, bearer and basic"
        );
    }
    Ok((source, secret))
}

/// `--auth` and `--public-url` (and Twilio's default: the origin of `--url`).
fn apply_standard(args: &SendArgs, source: &mut SourceConfig) -> anyhow::Result<()> {
    if let Some(auth) = &args.auth {
        if source.scheme != Scheme::Cloudevents {
            bail!("--auth is for --scheme cloudevents");
        }
        source.standard.auth = Some(match auth.as_str() {
            "basic" => CloudEventsAuth::Basic,
            "standard-webhooks" => CloudEventsAuth::StandardWebhooks,
            _ => CloudEventsAuth::Bearer,
        });
    }
    if args.public_url.is_some() && source.scheme != Scheme::Twilio {
        bail!("--public-url is for --scheme twilio");
    }
    if source.scheme == Scheme::Twilio {
        if let Some(url) = &args.public_url {
            source.standard.public_url = Some(url.trim_end_matches('/').to_string());
        } else if source.standard.public_url.is_none() {
            let url = args
                .url
                .clone()
                .unwrap_or_else(|| "http://127.0.0.1:8080".to_string());
            let uri: http::Uri = url.parse().with_context(|| format!("{url} is not a URL"))?;
            let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
                bail!("--scheme twilio signs the URL: give --public-url or a full --url");
            };
            source.standard.public_url = Some(format!("{scheme}://{authority}"));
        }
    }
    Ok(())
}

fn read_payload(file: &Path) -> anyhow::Result<Vec<u8>> {
    if file == Path::new("-") {
        let mut body = Vec::new();
        std::io::stdin()
            .read_to_end(&mut body)
            .context("cannot read the payload from stdin")?;
        Ok(body)
    } else {
        std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))
    }
}

/// Quote for a POSIX shell.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        send: SendArgs,
    }

    fn parse(args: &[&str]) -> SendArgs {
        Cli::try_parse_from(std::iter::once("send").chain(args.iter().copied()))
            .unwrap()
            .send
    }

    #[test]
    fn flags_build_the_source() {
        let args = parse(&[
            "--source",
            "gen",
            "--scheme",
            "hmac-sha256",
            "--secret",
            "k",
            "--signature-header",
            "X-Sig",
            "--signature-prefix",
            "sha256=",
            "--timestamp-header",
            "X-Ts",
            "--signed-payload",
            "{timestamp}.{body}",
            "--type-pointer",
            "/kind",
            "p.json",
        ]);
        let (source, secret) = source_and_secret(&args).unwrap();
        assert_eq!(secret.expose(), "k");
        let h = source.hmac.unwrap();
        assert_eq!(h.signature_header, "X-Sig");
        assert_eq!(h.timestamp_header.as_deref(), Some("X-Ts"));
        assert_eq!(h.event_type, Some(Locator::Pointer("/kind".into())));
    }

    #[test]
    fn bad_flag_combinations_are_refused() {
        let args = parse(&["--source", "s", "--scheme", "stripe", "p.json"]);
        assert!(source_and_secret(&args).is_err(), "no secret");
        let args = parse(&[
            "--source",
            "s",
            "--scheme",
            "stripe",
            "--secret",
            "x",
            "--signature-header",
            "X",
            "p.json",
        ]);
        assert!(source_and_secret(&args).is_err(), "hmac flag on stripe");
        let args = parse(&[
            "--source",
            "s",
            "--scheme",
            "hmac-sha256",
            "--secret",
            "x",
            "--signature-header",
            "X",
            "--signed-payload",
            "{timestamp}.{body}",
            "p.json",
        ]);
        let e = source_and_secret(&args).unwrap_err().to_string();
        assert!(e.contains("signed_payload"), "{e}");
        assert!(Cli::try_parse_from(["send", "--source", "s", "--scheme", "paypal", "p"]).is_err());
    }

    #[test]
    fn config_supplies_scheme_secret_and_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.toml");
        std::fs::write(
            &path,
            "[sources.gen]\nscheme = \"hmac-sha256\"\nsecrets = [\"k1\", \"k2\"]\nsignature_header = \"X-Sig\"\ntype_header = \"X-Kind\"\n",
        )
        .unwrap();
        let config = path.to_str().unwrap();
        let args = parse(&[
            "--source",
            "gen",
            "--config",
            config,
            "--signature-prefix",
            "v=",
            "p.json",
        ]);
        let (source, secret) = source_and_secret(&args).unwrap();
        assert_eq!(source.scheme, Scheme::HmacSha256);
        assert_eq!(secret.expose(), "k1");
        let h = source.hmac.unwrap();
        assert_eq!(h.signature_prefix, "v=");
        assert_eq!(h.event_type, Some(Locator::Header("X-Kind".into())));
        let args = parse(&["--source", "other", "--config", config, "p.json"]);
        assert!(source_and_secret(&args).is_err());
    }

    #[test]
    fn newer_schemes_take_their_flags() {
        let args = parse(&[
            "--source",
            "sms",
            "--scheme",
            "twilio",
            "--secret",
            "tok",
            "--url",
            "http://127.0.0.1:9999/hooks/sms",
            "p.form",
        ]);
        let (source, _) = source_and_secret(&args).unwrap();
        assert_eq!(
            source.standard.public_url.as_deref(),
            Some("http://127.0.0.1:9999")
        );
        let args = parse(&[
            "--source",
            "sms",
            "--scheme",
            "twilio",
            "--secret",
            "tok",
            "--public-url",
            "https://hooks.example.com/",
            "p.form",
        ]);
        let (source, _) = source_and_secret(&args).unwrap();
        assert_eq!(
            source.standard.public_url.as_deref(),
            Some("https://hooks.example.com")
        );
        let args = parse(&[
            "--source",
            "ce",
            "--scheme",
            "cloudevents",
            "--secret",
            "u:p",
            "--auth",
            "basic",
            "p.json",
        ]);
        let (source, _) = source_and_secret(&args).unwrap();
        assert_eq!(source.standard.auth, Some(CloudEventsAuth::Basic));
        let args = parse(&[
            "--source",
            "a",
            "--scheme",
            "bearer",
            "--secret",
            "t",
            "--id-header",
            "X-Id",
            "--type-pointer",
            "/status",
            "p.json",
        ]);
        let (source, _) = source_and_secret(&args).unwrap();
        assert_eq!(source.standard.id, Some(Locator::Header("X-Id".into())));
        assert_eq!(
            source.standard.event_type,
            Some(Locator::Pointer("/status".into()))
        );
        for bad in [
            &[
                "--source", "s", "--scheme", "stripe", "--secret", "x", "--auth", "basic", "p",
            ][..],
            &[
                "--source",
                "s",
                "--scheme",
                "github",
                "--secret",
                "x",
                "--public-url",
                "https://a.example",
                "p",
            ],
            &[
                "--source",
                "s",
                "--scheme",
                "bearer",
                "--secret",
                "x",
                "--signature-header",
                "X",
                "p",
            ],
            &[
                "--source",
                "s",
                "--scheme",
                "discord",
                "--secret",
                "x",
                "--id-header",
                "X",
                "p",
            ],
        ] {
            assert!(source_and_secret(&parse(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
