//! `jitgate`: the control service (`jitgate serve`) and the command line.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use control::cli::{self, grant_check};
use control::clock::{Clock, SystemClock};
use control::config::Config;
use control::App;

/// Just-in-time access to APIs.
#[derive(Parser)]
#[command(name = "jitgate", version, about)]
struct Cli {
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

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
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
            let cases: grant_check::CaseFile =
                serde_json::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
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
