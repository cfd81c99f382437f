//! The `whatsify` command line. Everything else lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use whatsify::config::Settings;
use whatsify::startup::Application;

#[derive(Parser)]
#[command(name = "whatsify", version, about = "WhatsApp Cloud API bot server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the webhook server (and, as they arrive, the workers).
    Serve {
        /// Settings file (TOML); default: whatsify.toml when present.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate flow files; errors are printed as file:line:col.
    Check {
        /// Folder of flow files (default: flows).
        dir: Option<PathBuf>,
    },
    /// Talk to the flows in this terminal, as a customer.
    Chat {
        /// The customer's WhatsApp id (shown in the session only).
        #[arg(long = "as", default_value = "15550009999")]
        wa_id: String,
        /// The customer's profile name.
        #[arg(long)]
        name: Option<String>,
        /// Folder of flow files.
        #[arg(long, default_value = "flows")]
        flows: PathBuf,
    },
    /// Introduce a new master key (the previous one stays readable), or
    /// with --rewrap, wrap every data key under the current master key.
    RotateKey {
        /// Settings file (TOML); default: whatsify.toml when present.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Rewrap the stored data keys under the current master key now
        /// (a running `serve` also does it in the background).
        #[arg(long)]
        rewrap: bool,
    },
    /// Manage the operators who use the console and the admin API.
    Operator {
        #[command(subcommand)]
        action: OperatorAction,
        /// Settings file (TOML); default: whatsify.toml when present.
        #[arg(long, global = true)]
        config: Option<PathBuf>,
    },
    /// Manage the client businesses.
    Business {
        #[command(subcommand)]
        action: BusinessAction,
    },
    /// Run the conversation transcripts in DIR/tests against the flows.
    Test {
        /// Folder of flow files (default: flows); transcripts in DIR/tests.
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum OperatorAction {
    /// Add an operator; prints their one-time enrolment link (24 h).
    Add {
        #[arg(long)]
        email: String,
        /// owner, admin, agent or auditor.
        #[arg(long)]
        role: String,
        /// A business they serve (repeat for several; an owner serves all).
        #[arg(long = "business")]
        businesses: Vec<String>,
    },
    /// List the operators.
    List,
    /// Disable an operator: their sessions and API tokens end at once.
    Disable { email: String },
    /// Clear an operator's password and authenticator, end their sessions
    /// and tokens, and print a new enrolment link.
    Reset { email: String },
}

#[derive(Subcommand)]
enum BusinessAction {
    /// Take a business off the system: its webhooks are discarded, its
    /// campaigns cancelled, every record and data key of its contacts
    /// deleted, and a deletion certificate written into the audit log.
    /// Resumable: run it again (or start the server) after a crash.
    Remove {
        /// The business's id.
        id: String,
        /// Settings file (TOML); default: whatsify.toml when present.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(config),
        Command::Check { dir } => check(dir.unwrap_or_else(|| PathBuf::from("flows"))),
        Command::Chat { wa_id, name, flows } => chat(flows, &wa_id, name),
        Command::Test { dir } => test(dir.unwrap_or_else(|| PathBuf::from("flows"))),
        Command::RotateKey { config, rewrap } => rotate_key(config, rewrap),
        Command::Business {
            action: BusinessAction::Remove { id, config },
        } => remove_business(config, &id),
        Command::Operator { action, config } => operator(config, action),
    }
}

fn operator(config: Option<PathBuf>, action: OperatorAction) -> ExitCode {
    use whatsify::operators::cli::Command as C;
    let settings = match Settings::load(config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("whatsify: {e}");
            return ExitCode::from(2);
        }
    };
    let command = match action {
        OperatorAction::Add {
            email,
            role,
            businesses,
        } => C::Add {
            email,
            role,
            businesses,
        },
        OperatorAction::List => C::List,
        OperatorAction::Disable { email } => C::Disable(email),
        OperatorAction::Reset { email } => C::Reset(email),
    };
    let Ok(runtime) = tokio::runtime::Runtime::new()
        .inspect_err(|e| eprintln!("whatsify: cannot start the runtime: {e}"))
    else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(whatsify::operators::cli::run(&settings, command)) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("whatsify operator: {e}");
            ExitCode::FAILURE
        }
    }
}

fn chat(dir: PathBuf, wa_id: &str, name: Option<String>) -> ExitCode {
    if let Err(errors) = whatsify::flow::load_dir(&dir) {
        for e in &errors {
            println!("{e}");
        }
        return ExitCode::from(1);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("whatsify chat: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = whatsify::chat::Options {
        wa_id: wa_id.to_owned(),
        name,
        flows: dir,
    };
    let stdin = std::io::stdin();
    let result = runtime.block_on(whatsify::chat::run(
        options,
        stdin.lock(),
        std::io::stdout(),
    ));
    // The server's tasks end with the runtime.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("whatsify chat: {e}");
            ExitCode::FAILURE
        }
    }
}

fn test(dir: PathBuf) -> ExitCode {
    let flows = match whatsify::flow::load_dir(&dir) {
        Ok(f) => f,
        Err(errors) => {
            for e in &errors {
                println!("{e}");
            }
            eprintln!(
                "{} error(s) in {}: fix them before testing",
                errors.len(),
                dir.display()
            );
            return ExitCode::from(1);
        }
    };
    let ttl = std::time::Duration::from_secs(24 * 3600);
    let reports = whatsify::flow::transcript::run_dir(&flows, &dir.join("tests"), ttl);
    let failed = reports.iter().filter(|r| r.failure.is_some()).count();
    for r in &reports {
        match &r.failure {
            None => println!("pass  {}  ({})", r.name, r.file.display()),
            Some(why) => println!("FAIL  {}  ({})\n{why}", r.name, r.file.display()),
        }
    }
    let uncovered = whatsify::flow::transcript::uncovered(&flows, &reports);
    if !uncovered.is_empty() {
        println!("steps no transcript reaches: {}", uncovered.join(", "));
    }
    println!("{} passed, {} failed", reports.len() - failed, failed);
    if failed > 0 || reports.is_empty() {
        if reports.is_empty() {
            eprintln!("no transcripts in {}", dir.join("tests").display());
        }
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn check(dir: PathBuf) -> ExitCode {
    match whatsify::flow::load_dir(&dir) {
        Ok(flows) => {
            let steps: usize = flows.flows.iter().map(|f| f.steps.len()).sum();
            println!(
                "{}: {} flows, {} steps, no errors",
                dir.display(),
                flows.flows.len(),
                steps
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors {
                println!("{e}");
            }
            eprintln!("{} error(s) in {}", errors.len(), dir.display());
            ExitCode::from(1)
        }
    }
}

fn rotate_key(config: Option<PathBuf>, rewrap: bool) -> ExitCode {
    use whatsify::privacy::keys;
    let settings = match Settings::load(config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("whatsify: {e}");
            return ExitCode::from(2);
        }
    };
    if !rewrap {
        return match keys::rotate(&settings) {
            Ok(keys::Rotated::File {
                path,
                new_id,
                old_id,
            }) => {
                println!(
                    "new master key {new_id} written to {}; the previous key {old_id} stays in the file and readable.",
                    path.display()
                );
                println!(
                    "Next: send SIGHUP to the running server (or restart it); it rewraps the data keys under {new_id} in the background. With the server stopped, `whatsify rotate-key --rewrap` does it at once."
                );
                ExitCode::SUCCESS
            }
            Ok(keys::Rotated::Settings { new_id, lines }) => {
                println!(
                    "# New master key {new_id}. Put these settings on every instance (they are secrets),"
                );
                println!(
                    "# then SIGHUP or restart each one; the data keys are rewrapped in the background."
                );
                println!(
                    "# Several instances: first add the new key to master_key_previous everywhere, then swap."
                );
                println!(
                    "# Once `whatsify rotate-key --rewrap` reports nothing left, drop master_key_previous."
                );
                print!("{lines}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("whatsify: {e}");
                ExitCode::from(2)
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("whatsify: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let secrets = keys::load(&settings)?;
        let keyring = whatsify::crypto::keyring::Keyring::new(&secrets.master);
        let store = whatsify::store::open(&settings.store).await?;
        let done = keys::rewrap_all(store.as_ref(), &keyring).await?;
        Ok::<_, anyhow::Error>((done, keyring.current_id()))
    });
    match result {
        Ok((done, id)) => {
            println!(
                "{} data keys rewrapped under master key {id}; {} already were; {} cannot be unwrapped by any configured key",
                done.rewrapped, done.current, done.unreadable
            );
            if done.unreadable > 0 {
                return ExitCode::FAILURE;
            }
            println!(
                "Every data key is under {id}: the previous master keys can be removed (account events and quarantined bodies sealed under them are kept 30 days at most, then unreadable without them)."
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("whatsify: {e}");
            ExitCode::FAILURE
        }
    }
}

fn remove_business(config: Option<PathBuf>, id: &str) -> ExitCode {
    let settings = match Settings::load(config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("whatsify: {e}");
            return ExitCode::from(2);
        }
    };
    let Ok(runtime) = tokio::runtime::Runtime::new()
        .inspect_err(|e| eprintln!("whatsify: cannot start the runtime: {e}"))
    else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(whatsify::offboard::remove_now(&settings, id)) {
        Ok(r) if !r.is_done() => {
            eprintln!(
                "whatsify: another instance is removing business {id} now; run this again later to see it done"
            );
            ExitCode::FAILURE
        }
        Ok(r) => {
            let d = &r.deleted;
            println!(
                "business {id} removed: {} contacts ({} other ids), {} campaigns and {} de-duplication marks deleted; the deletion certificate is in the audit log (kind {}).",
                d.contacts,
                d.linked_ids,
                d.campaigns,
                d.dedup_marks,
                whatsify::offboard::CERTIFICATE
            );
            println!(
                "Next: delete its [[businesses]] entry from the settings; its webhooks are discarded meanwhile."
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("whatsify: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: Option<PathBuf>) -> ExitCode {
    let settings = match Settings::load(config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("whatsify: {e}");
            return ExitCode::from(2);
        }
    };
    whatsify::telemetry::init(settings.log.format);
    // The workers and senders run on a multi-threaded Tokio runtime (the
    // HTTP server has its own worker threads either way); on actix's
    // default single-threaded system runtime they all shared one core.
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    };
    let system = match runtime() {
        Ok(_) => actix_web::rt::System::with_tokio_rt(|| {
            runtime().unwrap_or_else(|e| panic!("cannot start the runtime: {e}"))
        }),
        Err(e) => {
            eprintln!("whatsify: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = system.block_on(async move {
        let app = Application::build(&settings).await?;
        tracing::info!(port = app.port(), backend = ?settings.store.backend, "whatsify listening");
        app.run_until_signalled().await?;
        Ok::<_, anyhow::Error>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "whatsify stopped");
            eprintln!("whatsify: {e}");
            ExitCode::FAILURE
        }
    }
}
