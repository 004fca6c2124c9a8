//! `jitgate`: the control service (`jitgate serve`) and the command line.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use control::audit::{Record, Verification};
use control::cli::client::{self, Client};
use control::cli::{self, duration, grant_check, login};
use control::clock::{Clock, SystemClock};
use control::config::Config;
use control::grants::Revocation;
use control::requests::AccessRequest;
use control::App;

/// Just-in-time access to APIs.
#[derive(Parser)]
#[command(
    name = "jitgate",
    version,
    about,
    after_help = "Commands that call the control service (request, requests, approve, deny, cancel, \
        revoke, token, audit) find it and your token in JITGATE_URL and JITGATE_TOKEN, or in the \
        profile file ~/.config/jitgate/config.toml (url = \"https://jitgate.example.com\", \
        token = \"...\"); the environment wins."
)]
struct Cli {
    /// JSON output instead of tables and sentences (for scripts).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control service.
    Serve {
        /// The configuration file.
        #[arg(long, short, env = "JITGATE_CONFIG")]
        config: PathBuf,
    },
    /// Inspect or check grant tokens offline.
    Grant {
        #[command(subcommand)]
        command: GrantCommand,
    },
    /// Signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Ask for access: `jitgate request payments-api --method GET --path '/v1/invoices/*' --for 30m --reason "..."`.
    Request {
        /// The resource id.
        resource: String,
        /// Methods (repeatable).
        #[arg(long = "method", required = true)]
        methods: Vec<String>,
        /// Path patterns (repeatable).
        #[arg(long = "path", required = true)]
        paths: Vec<String>,
        /// How long, with a unit: 30m, 1h, 1h30m, 900s.
        #[arg(long = "for")]
        duration: String,
        /// When the window starts, for access planned ahead: +2h, or a UTC
        /// time like 2026-12-03T02:00:00Z. Approvers may approve before
        /// it; the grant works from then. Default: from approval.
        #[arg(long, value_name = "WHEN")]
        start: Option<String>,
        /// Why (required).
        #[arg(long)]
        reason: String,
        /// Ticket reference.
        #[arg(long)]
        ticket: Option<String>,
        /// Bind the grant to this client certificate (PEM): proxies then
        /// allow it only on mTLS connections presenting that certificate.
        #[arg(long = "bind-cert", value_name = "CERT.pem")]
        bind_cert: Option<std::path::PathBuf>,
        /// Wait for the decision and print the grant.
        #[arg(long)]
        wait: bool,
        /// Print what the scope would allow in the resource's API and
        /// create nothing.
        #[arg(long, conflicts_with = "wait")]
        dry_run: bool,
    },
    /// List requests you may see.
    Requests {
        /// Only pending ones.
        #[arg(long)]
        pending: bool,
        /// Only your own.
        #[arg(long)]
        mine: bool,
    },
    /// Withdraw a pending request of yours.
    Cancel {
        /// Request id.
        id: String,
    },
    /// Approve a request.
    Approve {
        /// Request id.
        id: String,
        /// Comment.
        #[arg(short = 'm', long)]
        comment: Option<String>,
    },
    /// Deny a request.
    Deny {
        /// Request id.
        id: String,
        /// Comment.
        #[arg(short = 'm', long)]
        comment: Option<String>,
    },
    /// Revoke a grant (its id is in the GRANT column of `jitgate requests`).
    Revoke {
        /// Grant id (`g_...`).
        grant: String,
        /// Why (required; recorded in the audit log).
        #[arg(long)]
        reason: String,
    },
    /// Print the grant of an approved request (for `curl -H "x-jit-grant: $(jitgate token ID)"`).
    Token {
        /// Request id.
        id: String,
        /// Print `export JITGATE_GRANT=...` instead.
        #[arg(long)]
        env: bool,
    },
    /// What grants were used for, and narrower scopes suggested from it
    /// (admins, auditors).
    Insights {
        /// Period start, Unix seconds (default: 30 days ago).
        #[arg(long)]
        since: Option<i64>,
    },
    /// Read the audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Sign in with the organisation's OpenID provider (device flow; --browser: code + PKCE on a loopback redirect).
    Login {
        /// The provider's issuer URL.
        #[arg(long, env = "JITGATE_ISSUER")]
        issuer: String,
        /// The CLI's client id at the provider.
        #[arg(long, env = "JITGATE_CLIENT_ID", default_value = "jitgate-cli")]
        client_id: String,
        /// Sign in in a browser (authorization code + PKCE) instead of with a device code.
        #[arg(long)]
        browser: bool,
        /// Ask for this authentication context (step-up), e.g. `phr`.
        #[arg(long)]
        acr_values: Option<String>,
        /// Ask for a sign-in no older than this many seconds.
        #[arg(long)]
        max_age: Option<u64>,
    },
    /// Forget the stored sign-in.
    Logout,
    /// Show who the stored sign-in is: user, groups, expiry.
    Whoami,
    /// Mint a development bearer token from the config's HS256 secret.
    DevToken {
        /// The configuration file.
        #[arg(long, short, env = "JITGATE_CONFIG")]
        config: PathBuf,
        /// User id.
        #[arg(long)]
        sub: String,
        /// Email.
        #[arg(long)]
        email: Option<String>,
        /// Groups (comma-separated).
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: i64,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// The latest records (and, with --follow, new ones as they come).
    Tail {
        /// How many.
        #[arg(short = 'n', default_value_t = 20)]
        lines: i64,
        /// Keep printing new records.
        #[arg(long, short)]
        follow: bool,
    },
    /// Every record as JSON lines; with --from/--to, an archive of that
    /// range with inclusion proofs in one signed checkpoint.
    Export {
        /// The first record of the archive.
        #[arg(long, requires = "to")]
        from: Option<u64>,
        /// The last record of the archive.
        #[arg(long, requires = "from")]
        to: Option<u64>,
        /// The signed checkpoint the proofs refer to (default: the latest).
        #[arg(long, requires = "from")]
        checkpoint: Option<u64>,
    },
    /// Verify an archive from `audit export --from --to` offline.
    VerifyExport {
        /// The archive.
        file: PathBuf,
        /// The checkpoint verifier key, or a file holding it.
        #[arg(long)]
        public_key: String,
    },
    /// Check the hash chain and signed checkpoints through the API, from
    /// where the last intact check ended (--full: from the first record);
    /// with --witness, check the database against a witness's signed
    /// checkpoints (offline).
    Verify {
        #[command(flatten)]
        witness: WitnessArgs,
    },
    /// Print a new Ed25519 key pair for signing checkpoints.
    Keygen {
        /// The key's (and the log's) name, e.g. `jitgate.example.com/audit`.
        #[arg(long)]
        name: String,
    },
}

/// `jitgate audit verify --witness DIR --public-key KEY --database-url URL`.
#[derive(clap::Args)]
struct WitnessArgs {
    /// A directory of signed checkpoints kept outside the database.
    #[arg(long, requires_all = ["public_key", "database_url"])]
    witness: Option<PathBuf>,
    /// The checkpoint verifier key (`<name>+<id>+<key>`), or a file holding it.
    #[arg(long)]
    public_key: Option<String>,
    /// The database to check (read only).
    #[arg(long, env = "JITGATE_DATABASE_URL")]
    database_url: Option<String>,
    /// Check every record, not only those after the last verified one.
    #[arg(long)]
    full: bool,
    /// Where the last verified checkpoint is remembered (default: DIR/.verified).
    #[arg(long)]
    state: Option<PathBuf>,
}

#[derive(Subcommand)]
enum GrantCommand {
    /// Decode a grant and print its header and claims (not verified).
    Inspect {
        /// The token.
        token: String,
    },
    /// Decide every case of a file in the spec's vector format; prints
    /// `<name>: <outcome code>` per case.
    Check {
        /// The file.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print a new kid and secret for the control and filter configs.
    Generate {
        /// The key id (default: k<days since epoch>).
        #[arg(long)]
        kid: Option<String>,
    },
}

fn main() -> std::process::ExitCode {
    // Errors are one sentence (with its causes on the same line) and a
    // non-zero exit, never a backtrace.
    match run(Cli::parse()).or_else(|e| login::step_up_and_retry(e, || run(Cli::parse()))) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let json = cli.json;
    match cli.command {
        Command::Serve { config } => serve(config),
        Command::Grant {
            command: GrantCommand::Inspect { token },
        } => {
            print!("{}", grant_check::inspect(&token)?);
            Ok(())
        }
        Command::Grant {
            command: GrantCommand::Check { file },
        } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let cases = vectors::VectorFile::parse(&text).with_context(|| format!("parsing {}", file.display()))?;
            for (name, code) in grant_check::check(&cases)? {
                println!("{name}: {code}");
            }
            Ok(())
        }
        Command::Keys {
            command: KeysCommand::Generate { kid },
        } => {
            print!("{}", cli::generate_key(kid)?);
            Ok(())
        }
        Command::Request {
            resource,
            methods,
            paths,
            duration,
            start,
            reason,
            ticket,
            bind_cert,
            wait,
            dry_run,
        } => {
            let now_s = SystemClock.now_s();
            let starts_at = start
                .map(|w| duration::parse_start(&w, now_s).map_err(|e| anyhow::anyhow!("--start: {e}")))
                .transpose()?;
            let cnf_x5t_s256 = match bind_cert {
                Some(path) => {
                    let text =
                        std::fs::read(&path).map_err(|e| anyhow::anyhow!("--bind-cert: {}: {e}", path.display()))?;
                    Some(cli::bind_cert::thumbprint(&text)?)
                }
                None => None,
            };
            let ask = client::Ask {
                resource,
                methods,
                paths,
                seconds: duration::parse_duration(&duration)?,
                starts_at,
                reason,
                ticket,
                cnf_x5t_s256,
            };
            if dry_run {
                println!("{}", client::dry_run(&api()?, &ask, json)?);
                return Ok(());
            }
            println!("{}", client::request(&api()?, ask, wait, json)?);
            Ok(())
        }
        Command::Requests { pending, mine } => {
            let mut q = vec![];
            if pending {
                q.push("state=pending");
            }
            if mine {
                q.push("mine=true");
            }
            let list: Vec<AccessRequest> = api()?.get(&format!("/v1/requests?{}", q.join("&")))?;
            if json {
                println!("{}", serde_json::to_string(&list)?);
            } else {
                print!("{}", client::table(&list));
            }
            Ok(())
        }
        Command::Cancel { id } => {
            let r: AccessRequest = api()?.post(&format!("/v1/requests/{id}/cancel"), &serde_json::json!({}))?;
            print_request(&r, json)
        }
        Command::Approve { id, comment } => decide(&id, "approve", comment, json),
        Command::Deny { id, comment } => decide(&id, "deny", comment, json),
        Command::Revoke { grant, reason } => {
            let body = serde_json::json!({"reason": reason});
            let r: Revocation = api()?.post(&format!("/v1/grants/{grant}/revoke"), &body)?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else if r.already_revoked {
                let by = r.grant.revoked_by.as_deref().unwrap_or("someone");
                let at = r.grant.revoked_at.map_or_else(String::new, client::readable_time);
                println!("{} was already revoked (by {by} at {at})", r.grant.id);
            } else {
                println!("revoked {}", r.grant.id);
            }
            Ok(())
        }
        Command::Token { id, env } => {
            let t: client::Token = api()?.get(&format!("/v1/requests/{id}/grant"))?;
            if json {
                println!("{}", serde_json::to_string(&t)?);
            } else if env {
                println!("export JITGATE_GRANT={}", t.token);
            } else {
                println!("{}", t.token);
            }
            Ok(())
        }
        Command::Audit { command } => audit(command, json),
        Command::Login {
            issuer,
            client_id,
            browser,
            acr_values,
            max_age,
        } => {
            let req = login::LoginRequest {
                issuer,
                client_id,
                browser,
                acr_values,
                max_age,
            };
            println!("{}", login::login(&req)?);
            Ok(())
        }
        Command::Logout => {
            println!("{}", login::logout()?);
            Ok(())
        }
        Command::Whoami => {
            // Refreshes first, so the expiry shown is the current token's.
            login::current_token(SystemClock.now_s())?;
            let stored = login::load()?.context("not signed in: run jitgate login")?;
            if json {
                println!("{}", serde_json::to_string(&login::whoami(&stored)?)?);
            } else {
                println!("{}", login::whoami_text(&stored)?);
            }
            Ok(())
        }
        Command::Insights { since } => {
            println!("{}", client::insights(&api()?, since, json)?);
            Ok(())
        }
        Command::DevToken {
            config,
            sub,
            email,
            groups,
            ttl,
        } => {
            let cfg = Config::load(&config)?;
            let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
            let token = control::auth::dev_token(&cfg.auth, &sub, email.as_deref(), &groups, ttl, SystemClock.now_s())
                .context("the configuration has no auth.hs256_secret to mint development tokens with")?;
            println!("{token}");
            Ok(())
        }
    }
}

fn serve(config: PathBuf) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let cfg = Config::load(&config)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listen = cfg.listen;
        let app = App::new(cfg, Arc::new(SystemClock)).await?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        tracing::info!(%listen, backend = ?app.db.backend, "jitgate control listening");
        control::serve(app, listener).await?;
        Ok(())
    })
}

fn api() -> anyhow::Result<Client> {
    Client::new(client::Profile::load()?)
}

fn print_request(r: &AccessRequest, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(r)?);
    } else {
        println!("{}", client::request_line(r));
    }
    Ok(())
}

fn decide(id: &str, decision: &str, comment: Option<String>, json: bool) -> anyhow::Result<()> {
    let body = serde_json::json!({"comment": comment});
    let r: AccessRequest = api()?.post(&format!("/v1/requests/{id}/{decision}"), &body)?;
    print_request(&r, json)
}

fn print_records(records: &[Record], json: bool) -> anyhow::Result<()> {
    if json {
        for r in records {
            println!("{}", serde_json::to_string(r)?);
        }
    } else {
        print!("{}", client::audit_lines(records));
    }
    Ok(())
}

/// Offline: the database against a witness directory, with the public key.
fn verify_witness(args: WitnessArgs, json: bool) -> anyhow::Result<()> {
    use control::audit::witness::{self, Witness};
    let (Some(dir), Some(key), Some(url)) = (args.witness, args.public_key, args.database_url) else {
        anyhow::bail!("--witness needs --public-key and --database-url");
    };
    let key = std::fs::read_to_string(&key).unwrap_or(key);
    let key = control::audit::checkpoint::CheckpointVerifier::parse(&key).context("--public-key")?;
    let state = args.state.unwrap_or_else(|| dir.join(".verified"));
    let from = if args.full { 0 } else { witness::read_state(&state) };
    let witness = Witness::load(&dir, &key, from).context("--witness")?;
    let report = tokio::runtime::Runtime::new()?.block_on(async {
        let pool = witness::connect_read_only(&url).await?;
        anyhow::Ok(witness::verify(&pool, &witness, from).await?)
    })?;
    witness::write_state(&state, &report)?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    }
    match &report.first_disagreement {
        None => {
            if !json {
                println!(
                    "ok: {} records checked from checkpoint {}; signed size {} ({} checkpoints); {} records not yet signed",
                    report.records_checked, report.verified_from, report.signed_size, report.checkpoints, report.unsigned_records
                );
            }
            Ok(())
        }
        Some(d) => anyhow::bail!(
            "record {} disagrees with signed checkpoint {}: {}",
            d.seq,
            d.checkpoint,
            d.reason
        ),
    }
}

/// Records `from..=to`, each with its inclusion proof in one signed
/// checkpoint, as `control::audit::export` describes.
fn export_range(api: &client::Client, from: u64, to: u64, checkpoint: Option<u64>) -> anyhow::Result<()> {
    use control::audit::export::{ExportedRecord, Header, InclusionProof, FORMAT};
    anyhow::ensure!(from >= 1 && from <= to, "--from must be at least 1 and at most --to");
    let mut size = checkpoint;
    for seq in from..=to {
        let query = size.map(|n| format!("?checkpoint={n}")).unwrap_or_default();
        let p: InclusionProof = api.get(&format!("/v1/audit/{seq}/proof{query}"))?;
        anyhow::ensure!(
            p.seq == seq,
            "asked for the proof of record {seq}, got one of {}",
            p.seq
        );
        if seq == from {
            // Every later proof refers to the checkpoint of the first.
            size = Some(p.tree_size);
            let header = Header {
                format: FORMAT.into(),
                from,
                to,
                checkpoint: p.checkpoint.clone(),
            };
            println!("{}", serde_json::to_string(&header)?);
        }
        let record = ExportedRecord {
            seq,
            leaf_input: p.leaf_input,
            proof: p.proof,
        };
        println!("{}", serde_json::to_string(&record)?);
    }
    Ok(())
}

/// Offline: an archive against the public key alone.
fn verify_export(file: &std::path::Path, key: String, json: bool) -> anyhow::Result<()> {
    let key = std::fs::read_to_string(&key).unwrap_or(key);
    let key = control::audit::checkpoint::CheckpointVerifier::parse(&key).context("--public-key")?;
    let text = std::fs::read_to_string(file).with_context(|| file.display().to_string())?;
    let verified = control::audit::export::verify(&text, &key)?;
    if json {
        println!("{}", serde_json::to_string(&verified)?);
    } else {
        println!(
            "ok: records {}..={} are in the signed checkpoint of {} records",
            verified.from, verified.to, verified.tree_size
        );
    }
    Ok(())
}

fn audit(command: AuditCommand, json: bool) -> anyhow::Result<()> {
    // The offline subcommands need no API profile.
    let command = match command {
        AuditCommand::Keygen { name } => {
            print!("{}", cli::audit_keygen(&name)?);
            return Ok(());
        }
        AuditCommand::Verify { witness } if witness.witness.is_some() => return verify_witness(witness, json),
        AuditCommand::VerifyExport { file, public_key } => return verify_export(&file, public_key, json),
        online => online,
    };
    let api = api()?;
    match command {
        // Done above.
        AuditCommand::Keygen { .. } | AuditCommand::VerifyExport { .. } => Ok(()),
        AuditCommand::Export {
            from: Some(from),
            to: Some(to),
            checkpoint,
        } => export_range(&api, from, to, checkpoint),
        AuditCommand::Verify { witness } => {
            let query = if witness.full { "?full=true" } else { "" };
            let v: Verification = api.get(&format!("/v1/audit/verify{query}"))?;
            if json {
                println!("{}", serde_json::to_string(&v)?);
            }
            match (v.ok, &v.first_broken) {
                (true, _) => {
                    if !json {
                        println!("{}", cli::client::verification_line(&v));
                    }
                    Ok(())
                }
                (false, Some(b)) => anyhow::bail!("chain broken at seq {}: {}", b.seq, b.reason),
                (false, None) => anyhow::bail!("the service says the chain is broken but names no link"),
            }
        }
        AuditCommand::Export { .. } => {
            let mut after = 0;
            loop {
                let page: Vec<Record> = api.get(&format!("/v1/audit?after={after}&limit=1000"))?;
                print_records(&page, true)?;
                match page.last() {
                    Some(last) if page.len() == 1000 => after = last.seq,
                    _ => return Ok(()),
                }
            }
        }
        AuditCommand::Tail { lines, follow } => {
            // The newest records, newest first; printed oldest first.
            let limit = lines.clamp(1, 1000);
            let mut newest: Vec<Record> = api.get(&format!("/v1/audit?order=desc&limit={limit}"))?;
            newest.reverse();
            print_records(&newest, json)?;
            if !follow {
                return Ok(());
            }
            let mut after = newest.last().map_or(0, |r| r.seq);
            loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
                let page: Vec<Record> = api.get(&format!("/v1/audit?after={after}&limit=1000"))?;
                print_records(&page, json)?;
                after = page.last().map_or(after, |r| r.seq);
            }
        }
    }
}
