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
    /// Run the conversation transcripts in DIR/tests against the flows.
    Test {
        /// Folder of flow files (default: flows); transcripts in DIR/tests.
        dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(config),
        Command::Check { dir } => check(dir.unwrap_or_else(|| PathBuf::from("flows"))),
        Command::Chat { wa_id, name, flows } => chat(flows, &wa_id, name),
        Command::Test { dir } => test(dir.unwrap_or_else(|| PathBuf::from("flows"))),
    }
}

fn chat(dir: PathBuf, wa_id: &str, name: Option<String>) -> ExitCode {
    let flows = match whatsify::flow::load_dir(&dir) {
        Ok(f) => f,
        Err(errors) => {
            for e in &errors {
                println!("{e}");
            }
            return ExitCode::from(1);
        }
    };
    let ttl = std::time::Duration::from_secs(24 * 3600);
    let stdin = std::io::stdin();
    match whatsify::flow::chat::run(&flows, wa_id, name, ttl, stdin.lock(), std::io::stdout()) {
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
