//! The `childgraph` binary: parses the command line, sets up logging, and hands over to the library.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

/// Every answer allocates many small, short-lived buffers across worker threads; mimalloc serves them with less
/// contention than the system allocator (measured with the load benchmark, see README).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "childgraph",
    version,
    about = "A GraphQL gateway for sharing information about children between the professionals responsible for their safety"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the gateway from a config file.
    Serve {
        #[arg(long)]
        config: PathBuf,
    },
    /// Runs the gateway, three simulated sources and an embedded store in one process.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        #[arg(long, default_value = childgraph::demo::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// Generated children besides the fixed demo cast.
        #[arg(long, default_value_t = 2000)]
        children: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Faults every simulator starts with, as JSON: `{"latency_ms": 10, "jitter_ms": 2}`.
        /// Change them at run time with `POST /_sim/faults` on each simulator.
        #[arg(long, value_parser = parse_faults)]
        faults: Option<childgraph_simulators::Faults>,
        /// A policy file to run with instead of the built-in default; reloaded when it changes, or on SIGHUP.
        #[arg(long)]
        policy: Option<PathBuf>,
    },
    /// Prints a token for a user (a demo identity, or one the demo's authoriser authorised), signed with the demo's key (accepted by `demo` only).
    Token {
        #[arg(long)]
        user: String,
        #[arg(long, default_value = childgraph::demo::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
    /// The GraphQL schema.
    Schema {
        #[command(subcommand)]
        command: SchemaCommand,
    },
    /// Config files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// The policy officer's tools.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The operator's account tools.
    Accounts {
        #[command(subcommand)]
        command: AccountsCommand,
    },
    /// Record linkage.
    Linkage {
        #[command(subcommand)]
        command: LinkageCommand,
    },
    /// Writes a synthetic population and its truth as CSV files, for linkage evaluation and benchmarks.
    Population {
        #[arg(long, default_value_t = 2000)]
        children: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long, value_enum, default_value_t = Noise::Default)]
        noise: Noise,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum SchemaCommand {
    /// Prints the SDL.
    Print,
}

#[derive(Debug, Subcommand)]
enum LinkageCommand {
    /// Links the records of LEFT to those of RIGHT and measures the result against TRUTH. The last line of output is
    /// one JSON object: precision, recall, f1, pairs_compared, seconds.
    Evaluate {
        /// Records: id,given_name,family_name,date_of_birth,sex,postcode,address.
        #[arg(long)]
        left: PathBuf,
        #[arg(long)]
        right: PathBuf,
        /// True pairs: left_id,right_id.
        #[arg(long)]
        truth: PathBuf,
        /// The least match probability that links a pair: 0.5, or with --as-gateway the gateway's default.
        #[arg(long)]
        threshold: Option<f64>,
        /// Links as the gateway does by default: its built-in parameters, no name frequencies, and its link
        /// threshold, in place of parameters estimated from the two files.
        #[arg(long)]
        as_gateway: bool,
        /// Also prints the estimated m and u probabilities of every comparison level.
        #[arg(long)]
        parameters: bool,
        /// Also prints each false and each missed link, by id, with the level of every comparison: for tuning.
        #[arg(long)]
        mistakes: bool,
        /// Writes the estimated parameters to this YAML file, for the gateway's `linkage.parameters`.
        #[arg(long, value_name = "FILE")]
        save_parameters: Option<PathBuf>,
        /// Writes the shares of the names at least 10 records carry to this CSV file, for the gateway's
        /// `linkage.frequencies`.
        #[arg(long, value_name = "FILE")]
        save_frequencies: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Checks a policy file: every child-data field has a category, every role, category and permission named is
    /// known. Errors give file, line and column.
    Check { file: PathBuf },
    /// Prints every field, visible or withheld, for these roles and this situation, with the rule that decided.
    Explain {
        /// A role; repeat for a user holding several.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// The child is shielded.
        #[arg(long)]
        shielded: bool,
        /// The user holds a live override of the child's shield.
        #[arg(long = "override")]
        overridden: bool,
        /// Whether an organisation of the user works with the child.
        #[arg(long, value_enum, default_value_t = RelationArg::Own)]
        relation: RelationArg,
        /// The child is past the age limit.
        #[arg(long)]
        past_age: bool,
        /// The policy file; the built-in default when absent.
        #[arg(long)]
        policy: Option<PathBuf>,
    },
    /// Runs case files (roles, situation, expected fields) against a policy; exits non-zero on any failure.
    Test {
        #[arg(required = true)]
        cases: Vec<PathBuf>,
        /// The policy file; the built-in default when absent.
        #[arg(long)]
        policy: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum AccountsCommand {
    /// Sets up an organisation and authorises a user in it: the first authoriser of an organisation's accounts, who
    /// then grants the rest with `authoriseUser`. Audited as `account.authorise`, naming the operator (--by).
    Authorise {
        #[arg(long)]
        config: PathBuf,
        #[command(flatten)]
        grant: childgraph::accounts_cli::Grant,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Checks that no audit record was edited, deleted or reordered; exits non-zero if one was.
    Verify {
        #[arg(long, conflicts_with = "data_dir")]
        config: Option<PathBuf>,
        /// A record the log held, as SEQ:HASH (the `audit head` the gateway logs, or a head this command printed):
        /// records cut from the end of the log are found only against an anchor.
        #[arg(long)]
        anchor: Option<childgraph::audit::Anchor>,
        /// The demo's data directory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Subject access: every record of who saw what about one child, when and why.
    Sar {
        #[arg(long)]
        child: String,
        #[arg(long, conflicts_with = "data_dir")]
        config: Option<PathBuf>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RelationArg {
    Own,
    Other,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Checks a config file and reports the first problem, naming the key.
    Check { file: PathBuf },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Noise {
    Low,
    Default,
    High,
}

fn parse_faults(text: &str) -> Result<childgraph_simulators::Faults, String> {
    let faults: childgraph_simulators::Faults =
        serde_json::from_str(text).map_err(|e| format!("not valid faults: {e}"))?;
    faults.validate()?;
    Ok(faults)
}

#[allow(clippy::print_stdout)]
fn run_policy(command: PolicyCommand) -> anyhow::Result<()> {
    use childgraph::policy_cli;
    match command {
        PolicyCommand::Check { file } => print!("{}", policy_cli::check(&file)?),
        PolicyCommand::Explain {
            roles,
            shielded,
            overridden,
            relation,
            past_age,
            policy,
        } => {
            let policy = policy_cli::load_or_default(policy.as_deref())?;
            let situation = childgraph_policies::Situation {
                shielded,
                overridden,
                relation: match relation {
                    RelationArg::Own => childgraph_policies::Relation::Own,
                    RelationArg::Other => childgraph_policies::Relation::Other,
                },
                past_age,
            };
            print!("{}", policy_cli::explain(&policy, &roles, situation)?);
        }
        PolicyCommand::Test { cases, policy } => {
            let policy = policy_cli::load_or_default(policy.as_deref())?;
            let files: Vec<&std::path::Path> = cases.iter().map(PathBuf::as_path).collect();
            let (ok, out) = policy_cli::test(&policy, &files)?;
            print!("{out}");
            if !ok {
                return Err(Unsuccessful.into());
            }
        }
    }
    Ok(())
}

/// A command that has said all it has to say, and ends with a failing exit status: a policy case that failed, an audit
/// log that is not whole.
#[derive(Debug)]
struct Unsuccessful;

impl std::fmt::Display for Unsuccessful {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("unsuccessful")
    }
}

impl std::error::Error for Unsuccessful {}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let telemetry = childgraph::telemetry::init();
    let outcome = run(cli).await;
    // The log lines still queued are written before the process ends.
    drop(telemetry);
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.is::<Unsuccessful>() => std::process::ExitCode::FAILURE,
        Err(e) => {
            // As `anyhow` reports an error returned from `main`.
            eprintln!("Error: {e:?}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stdout)]
async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config } => childgraph::startup::serve(&config).await,
        Command::Demo {
            listen,
            data_dir,
            children,
            seed,
            faults,
            policy,
        } => {
            let options = childgraph::demo::DemoOptions {
                children,
                seed,
                faults: faults.unwrap_or_default(),
                policy,
                ..childgraph::demo::DemoOptions::new(listen, data_dir)
            };
            childgraph::demo::run(options).await
        }
        Command::Token { user, data_dir } => {
            if !childgraph::demo::IDENTITIES.iter().any(|i| i.user == user) {
                let names: Vec<_> = childgraph::demo::IDENTITIES
                    .iter()
                    .map(|i| i.user)
                    .collect();
                eprintln!(
                    "note: {user} is not a demo identity ({}); the demo refuses this token unless the authoriser has authorised {user}",
                    names.join(", ")
                );
            }
            let key = childgraph::demo_key::DemoKey::load(&data_dir)?;
            println!("{}", key.token(&user)?);
            Ok(())
        }
        Command::Schema {
            command: SchemaCommand::Print,
        } => {
            print!("{}", childgraph::graphql::sdl());
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Check { file },
        } => {
            let config = childgraph::config::Config::load(&file)?;
            config.linkage.linker()?;
            if let Some(trusted) = &config.request.trusted_documents {
                childgraph::graphql::trusted::TrustedDocuments::load(
                    &trusted.manifest,
                    trusted.enforce,
                )?;
            }
            println!("{} is valid", file.display());
            Ok(())
        }
        Command::Policy { command } => run_policy(command),
        Command::Accounts {
            command: AccountsCommand::Authorise { config, grant },
        } => {
            let config = childgraph::config::Config::load(&config)?;
            let policy = childgraph::startup::load_policy(config.policy.as_deref())?;
            let store = childgraph::store::Store::open(&config.store).await?;
            let out = childgraph::accounts_cli::authorise(
                &store,
                &policy,
                grant,
                config.accounts.recertify_months,
            )
            .await?;
            print!("{out}");
            Ok(())
        }
        Command::Audit { command } => {
            use childgraph::audit_cli;
            match command {
                AuditCommand::Verify {
                    config,
                    data_dir,
                    anchor,
                } => {
                    let store = audit_cli::open(config.as_deref(), data_dir.as_deref()).await?;
                    let (whole, out) = audit_cli::verify_anchored(&store, anchor.as_ref()).await?;
                    print!("{out}");
                    if !whole {
                        return Err(Unsuccessful.into());
                    }
                }
                AuditCommand::Sar {
                    child,
                    config,
                    data_dir,
                } => {
                    let store = audit_cli::open(config.as_deref(), data_dir.as_deref()).await?;
                    print!("{}", audit_cli::subject_access(&store, &child).await?);
                }
            }
            Ok(())
        }
        Command::Linkage {
            command:
                LinkageCommand::Evaluate {
                    left,
                    right,
                    truth,
                    threshold,
                    as_gateway,
                    parameters,
                    mistakes,
                    save_parameters,
                    save_frequencies,
                },
        } => {
            let linker = as_gateway.then(childgraph_linkage::Linker::default);
            let threshold = threshold.unwrap_or(match &linker {
                Some(linker) => linker.link_threshold,
                None => 0.5,
            });
            childgraph::linkage_cli::run(
                &left,
                &right,
                &truth,
                &childgraph::linkage_cli::Report {
                    threshold,
                    parameters,
                    mistakes,
                    save_parameters,
                    save_frequencies,
                    linker,
                },
            )?;
            Ok(())
        }
        Command::Population {
            children,
            seed,
            noise,
            out,
        } => {
            use childgraph_simulators::population::{NoiseConfig, PopulationConfig, export};
            let noise = match noise {
                Noise::Low => NoiseConfig::low(),
                Noise::Default => NoiseConfig::default(),
                Noise::High => NoiseConfig::high(),
            };
            let config = PopulationConfig {
                children,
                seed,
                noise,
                as_of: chrono::Utc::now().date_naive(),
                ..PopulationConfig::default()
            };
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            let summary = export(&config, &out)
                .with_context(|| format!("cannot write the population to {}", out.display()))?;
            println!("{summary:?}");
            Ok(())
        }
    }
}
