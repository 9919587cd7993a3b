//! `etcdbrctl`: continuous backup and restore for etcd, compatible with gardener's
//! etcd-backup-restore (same subcommands, flags, object layout and formats).

mod cli;
mod flags;
mod logging;
mod progress;

use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let args = match etcdbrctl::config_file::expand(std::env::args_os().collect()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let cli = Cli::parse_from(args);
    if cli.version {
        print_version();
        return ExitCode::SUCCESS;
    }
    let Some(command) = cli.command else {
        let _ = <Cli as clap::CommandFactory>::command().print_help();
        return ExitCode::from(2);
    };
    logging::init(cli.log_level, cli.log_format);
    let format = cli.log_format;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        log_version();
        let stop = CancellationToken::new();
        tokio::spawn(stop_on_signal(stop.clone()));
        let done = |r: anyhow::Result<()>| {
            r.map(|()| ExitCode::SUCCESS)
                .map_err(|e| (e, ExitCode::FAILURE))
        };
        match command {
            Command::Snapshot(args) => done(cli::snapshot::run(*args, stop).await),
            Command::Restore(args) => done(cli::restore::run(*args).await),
            Command::Compact(args) => done(cli::compact::run(*args).await),
            Command::Initialize(args) => done(cli::initialize::run(*args).await),
            Command::Server(args) => done(cli::server::run(*args, stop).await),
            Command::Copy(args) => done(cli::copy::run(*args, stop).await),
            Command::List(args) => done(cli::list::run(*args).await),
            // 0 verified, 1 a backup is bad, 2 verification could not run.
            Command::Verify(args) => match cli::verify::run(*args).await {
                Ok(true) => Ok(ExitCode::SUCCESS),
                Ok(false) => Ok(ExitCode::FAILURE),
                Err(e) => Err((e, ExitCode::from(2))),
            },
        }
    });
    match result {
        Ok(code) => code,
        Err((e, code)) => {
            // Once: as a log line in JSON, else as the last line of stderr.
            match format {
                logging::LogFormat::Json => tracing::error!("{e:#}"),
                logging::LogFormat::Text => eprintln!("error: {e:#}"),
            }
            code
        }
    }
}

async fn stop_on_signal(stop: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot install signal handlers; SIGTERM will not flush pending deltas");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("Received SIGTERM, stopping"),
        _ = int.recv() => tracing::info!("Received SIGINT, stopping"),
    }
    stop.cancel();
}

const VERSION: &str = env!("CARGO_PKG_VERSION");
const GIT_SHA: Option<&str> = option_env!("ETCDBR_GIT_SHA");

fn print_version() {
    println!("etcdbrctl Version: {VERSION}");
    println!("Git SHA: {}", GIT_SHA.unwrap_or("unknown"));
    println!(
        "OS/Arch: {}/{}",
        std::env::consts::OS,
        std::env::consts::ARCH
    );
}

fn log_version() {
    tracing::info!("etcdbrctl Version: {VERSION}");
    tracing::info!("Git SHA: {}", GIT_SHA.unwrap_or("unknown"));
    tracing::info!(
        "OS/Arch: {}/{}",
        std::env::consts::OS,
        std::env::consts::ARCH
    );
}
