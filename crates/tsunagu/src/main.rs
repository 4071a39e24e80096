use clap::Parser;
use tsunagu::cli::{Cli, Command, ConfigCommand};
use tsunagu::config::Config;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // `config example` must work even when the current config is broken.
    if matches!(cli.command, Command::Config { command: ConfigCommand::Example }) {
        print!("{}", tsunagu::config::EXAMPLE);
        return std::process::ExitCode::SUCCESS;
    }
    let config = match Config::load(cli.config.as_deref(), std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("設定を読み込めません / configuration error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    tsunagu::telemetry::init(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(tsunagu::cli::run(cli, config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "fatal");
            eprintln!("エラー / error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
